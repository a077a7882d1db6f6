"""Every API is rate-limited per user and per tenant (DRF throttling on the Redis cache).

A fixed window per rate period: one atomic INCR per request and key, where DRF's SimpleRateThrottle reads and
rewrites the whole list of request times (6,000 of them for a tenant at its default rate) and loses counts to races
between processes. A client may fit up to twice the rate across a window's edge, which bounds it as well. The rates
are read from the settings at each request, and the keys carry the tenant, so one tenant's users never share a count
with another's. A refusal is a 429 with Retry-After and the usual error body, naming the limit and its setting.
"""

import logging
import time

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from mlops.exceptions import TooManyRequests

logger = logging.getLogger(__name__)
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'1200/min' -> (1200, 60)."""
    count, period = rate.split("/")
    return int(count), _PERIODS[period[0]]


class _PrincipalRateThrottle(BaseThrottle):
    setting: str  # the setting that holds this throttle's rate
    who: str
    per_user: bool  # one count per user, or one for the whole tenant

    def key(self, principal) -> str:
        scope = f"user:{principal.user_id}" if self.per_user else "tenant"
        return f"{principal.tenant_schema}:{scope}"

    def allow_request(self, request, view) -> bool:
        if request.user is None:  # not authenticated: refused before it costs anything
            return True
        rate = getattr(settings, self.setting)
        allowed, period = parse_rate(rate)
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.key(request.user)}:{period}:{window}"
        try:
            cache.add(key, 0, period + 1)
            if cache.incr(key) <= allowed:
                return True
        except redis.RedisError as error:
            # Redis down must not take the API with it: unthrottled meanwhile (statement timeouts still bound it).
            logger.warning("%s not enforced: Redis unavailable (%s)", self.setting, error)
            return True
        retry_after = max(int((window + 1) * period - now) + 1, 1)
        raise TooManyRequests(
            f"Too many requests {self.who}: at most {rate} ({self.setting}); retry after {retry_after} s.",
            {"limit": self.setting, "rate": rate},
            retry_after=retry_after,
        )


class UserRateThrottle(_PrincipalRateThrottle):
    setting = "API_RATE_PER_USER"
    who = "from this user"
    per_user = True


class TenantRateThrottle(_PrincipalRateThrottle):
    setting = "API_RATE_PER_TENANT"
    who = "to this tenant"
    per_user = False
