"""Verifies Auth0 access tokens: RS256 signature against the issuer's JWKS, then exp, iss and aud."""

import threading
import time

import httpx
import jwt
from django.conf import settings

from mlops.exceptions import NotAuthenticated, ServiceUnavailable

ALGORITHMS = ["RS256"]
# A token whose kid is unknown may mean the issuer rotated its keys; refetch, but not more often than this.
JWKS_MIN_REFETCH_SECONDS = 10.0


class JwksKeySource:
    """Public keys from the issuer's JWKS URL, cached; an unknown kid triggers one (throttled) refetch."""

    def __init__(self, url: str, cache_seconds: float, timeout: float):
        self.url = url
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._keys: dict[str, object] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            response = httpx.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as error:
            raise ServiceUnavailable(
                "The token issuer's key set (JWKS) cannot be reached; try again shortly.",
                {"jwks_url": self.url, "reason": str(error)},
            ) from error
        self._keys = {key.key_id: key.key for key in key_set.keys if key.key_id}
        self._fetched_at = time.monotonic()

    def key_for(self, kid: str):
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if not self._keys or age > self.cache_seconds or (kid not in self._keys and age > JWKS_MIN_REFETCH_SECONDS):
                self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise NotAuthenticated("The token is signed with a key the issuer does not publish.", {"kid": kid})
        return key


_key_source: JwksKeySource | None = None
_key_source_lock = threading.Lock()


def key_source():
    """The JWKS source for the configured issuer, or the built-in development key."""
    global _key_source
    if settings.DEV_AUTH:
        from tenancy.dev_auth import dev_key_source

        return dev_key_source()
    with _key_source_lock:
        if _key_source is None or _key_source.url != settings.JWT_JWKS_URL:
            _key_source = JwksKeySource(
                settings.JWT_JWKS_URL, settings.JWKS_CACHE_SECONDS, settings.PLATFORM_TIMEOUT_SECONDS
            )
        return _key_source


def verify_jwt(token: str) -> dict:
    """Return the token's claims, or raise NotAuthenticated saying exactly what is wrong with it."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as error:
        raise NotAuthenticated("The bearer token is not a well-formed JWT.") from error
    if header.get("alg") not in ALGORITHMS:
        raise NotAuthenticated("The token must be signed with RS256.", {"alg": header.get("alg")})
    if not header.get("kid"):
        raise NotAuthenticated("The token header has no key id (kid).")
    key = key_source().key_for(header["kid"])
    try:
        return jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            options={"require": ["exp", "iss", "aud", "sub"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as error:
        raise NotAuthenticated("The token has expired.") from error
    except jwt.InvalidAudienceError as error:
        raise NotAuthenticated("The token was not issued for this API (wrong audience).") from error
    except jwt.InvalidIssuerError as error:
        raise NotAuthenticated("The token was not issued by the trusted issuer.") from error
    except jwt.MissingRequiredClaimError as error:
        raise NotAuthenticated(f"The token lacks the required claim '{error.claim}'.") from error
    except jwt.InvalidSignatureError as error:
        raise NotAuthenticated("The token's signature does not verify.") from error
    except jwt.InvalidTokenError as error:
        raise NotAuthenticated(f"The token is invalid: {error}.") from error
