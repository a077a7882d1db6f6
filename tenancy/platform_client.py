"""Asks the platform service whether a token is valid (OAuth 2.0 token introspection, RFC 7662 style).

The answer is cached in Redis under a hash of the token, never longer than the token lives nor than
INTROSPECTION_CACHE_SECONDS, so a revoked token stops working within that cap.
"""

import hashlib
import logging
import time
from contextlib import suppress

import httpx
from django.conf import settings
from django.core.cache import cache
from redis import RedisError

from mlops.exceptions import ServiceUnavailable
from mlops.metrics import count_introspection_cache

logger = logging.getLogger(__name__)


def _cache_key(token: str) -> str:
    return "introspection:" + hashlib.sha256(token.encode()).hexdigest()


def _ask_platform(token: str) -> dict:
    if settings.DEV_AUTH:
        from tenancy.dev_auth import dev_introspect

        return dev_introspect(token)
    try:
        response = httpx.post(
            f"{settings.PLATFORM_URL.rstrip('/')}/oauth/introspect",
            data={"token": token, "token_type_hint": "access_token"},
            auth=(settings.PLATFORM_CLIENT_ID, settings.PLATFORM_CLIENT_SECRET),
            timeout=settings.PLATFORM_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        answer = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise ServiceUnavailable(
            "The platform service cannot be reached to validate the token; try again shortly.", {"reason": str(error)}
        ) from error
    if not isinstance(answer, dict) or "active" not in answer:
        raise ServiceUnavailable("The platform service gave an answer without 'active'.")
    return answer


def introspect(token: str, expires_at: int) -> dict:
    """The platform's answer, from the cache when it holds one; with Redis down, the platform is asked."""
    key = _cache_key(token)
    try:
        answer = cache.get(key)
    except RedisError:
        logger.warning("introspection cache unreachable; asking the platform directly", exc_info=True)
        count_introspection_cache("unavailable")
        return _ask_platform(token)
    count_introspection_cache("miss" if answer is None else "hit")
    if answer is None:
        answer = _ask_platform(token)
        ttl = min(settings.INTROSPECTION_CACHE_SECONDS, int(expires_at - time.time()))
        if ttl > 0:
            with suppress(RedisError):
                cache.set(key, answer, timeout=ttl)
    return answer
