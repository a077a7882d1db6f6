import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tenancy import jwt_verification
from tenancy.models import Tenant
from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db

PROJECTS = "/api/v1/projects/"


def _error(response) -> str:
    body = response.json()
    assert set(body) == {"message", "extra"}, body
    return body["message"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "Authentication required"),
        ("Token abc", "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
        ("Bearer not-a-jwt", "not a well-formed JWT"),
    ],
)
def test_missing_or_malformed_token_is_401(api_client, header, expected):
    client = api_client()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(PROJECTS)
    assert response.status_code == 401
    assert expected in _error(response)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(make_token, api_client):
    response = api_client(make_token(lifetime=-60)).get(PROJECTS)
    assert response.status_code == 401
    assert "expired" in _error(response)


@pytest.mark.parametrize(
    ("claim", "value", "expected"),
    [
        ("aud", "another-api", "wrong audience"),
        ("iss", "https://evil.example/", "trusted issuer"),
    ],
)
def test_token_for_another_audience_or_issuer_is_401(auth0, platform, api_client, claim, value, expected):
    platform.grant("auth0|aud-iss", tenant=TENANT_A, workspace="ws-1", role="admin")
    token = auth0.issue("auth0|aud-iss", **{claim: value})
    response = api_client(token).get(PROJECTS)
    assert response.status_code == 401
    assert expected in _error(response)


def test_forged_token_signed_with_unpublished_key_is_401(auth0, platform, api_client):
    platform.grant("auth0|forger", tenant=TENANT_A, workspace="ws-1", role="admin")
    forger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": auth0.issuer, "aud": auth0.audience, "sub": "auth0|forger", "exp": now + 600}
    # the right kid, the wrong key
    forged = auth0.sign(claims, key=forger_key)
    response = api_client(forged).get(PROJECTS)
    assert response.status_code == 401
    assert "signature" in _error(response)


def test_symmetric_algorithm_is_refused(auth0, platform, api_client):
    platform.grant("auth0|hs", tenant=TENANT_A, workspace="ws-1", role="admin")
    claims = {"iss": auth0.issuer, "aud": auth0.audience, "sub": "auth0|hs", "exp": int(time.time()) + 600}
    token = jwt.encode(claims, "shared-secret-guess-" * 3, algorithm="HS256", headers={"kid": auth0.current_kid})
    response = api_client(token).get(PROJECTS)
    assert response.status_code == 401
    assert "RS256" in _error(response)


def test_rotated_signing_key_is_picked_up(auth0, make_token, api_client, monkeypatch):
    # given a key source that has already cached the old key set
    assert api_client(make_token()).get(PROJECTS).status_code == 200
    monkeypatch.setattr(jwt_verification, "JWKS_MIN_REFETCH_SECONDS", 0)
    fetches_before = auth0.requests.count(("GET", "/.well-known/jwks.json"))
    # when the issuer rotates and signs with a kid we have never seen
    auth0.rotate()
    response = api_client(make_token()).get(PROJECTS)
    # then the key set is fetched once more and the token verifies
    assert response.status_code == 200, response.content
    assert auth0.requests.count(("GET", "/.well-known/jwks.json")) == fetches_before + 1


def test_unknown_kid_does_not_refetch_on_every_request(auth0, platform, api_client):
    platform.grant("auth0|kid", tenant=TENANT_A, workspace="ws-1", role="admin")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": auth0.issuer, "aud": auth0.audience, "sub": "auth0|kid", "exp": int(time.time()) + 600}
    token = auth0.sign(claims, key=stranger, kid="never-published")
    api_client(token).get(PROJECTS)
    fetches = auth0.requests.count(("GET", "/.well-known/jwks.json"))
    for _ in range(3):
        response = api_client(token).get(PROJECTS)
        assert response.status_code == 401
        assert "key the issuer does not publish" in _error(response)
    assert auth0.requests.count(("GET", "/.well-known/jwks.json")) == fetches


def test_introspection_is_cached_and_revocation_applies_after_the_cap(auth0, platform, api_client, settings):
    settings.INTROSPECTION_CACHE_SECONDS = 1
    platform.grant("auth0|revoked-soon", tenant=TENANT_A, workspace="ws-1", role="viewer")
    client = api_client(auth0.issue("auth0|revoked-soon"))
    asked_before = platform.introspections()
    assert client.get(PROJECTS).status_code == 200
    assert client.get(PROJECTS).status_code == 200
    assert platform.introspections() == asked_before + 1
    # when the platform revokes the user, the cached answer holds only until the cap
    platform.revoke("auth0|revoked-soon")
    time.sleep(1.2)
    response = client.get(PROJECTS)
    assert response.status_code == 401
    assert "not active" in _error(response)


def test_introspection_is_not_cached_longer_than_the_token_lives(auth0, platform, api_client, settings):
    from django.core.cache import cache

    from tenancy.platform_client import _cache_key

    settings.INTROSPECTION_CACHE_SECONDS = 3600
    platform.grant("auth0|short-lived", tenant=TENANT_A, workspace="ws-1", role="viewer")
    token = auth0.issue("auth0|short-lived", lifetime=30)
    assert api_client(token).get(PROJECTS).status_code == 200
    key = cache.make_and_validate_key(_cache_key(token))
    ttl = cache._cache.get_client(key).ttl(key)
    assert 0 < ttl <= 30


def test_platform_unreachable_is_503(auth0, platform, api_client):
    platform.grant("auth0|platform-down", tenant=TENANT_A, workspace="ws-1", role="admin")
    platform.down = True
    try:
        response = api_client(auth0.issue("auth0|platform-down")).get(PROJECTS)
    finally:
        platform.down = False
    assert response.status_code == 503
    assert "platform service cannot be reached" in _error(response)


def test_jwks_unreachable_is_503(make_token, api_client, settings):
    settings.JWT_JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"
    response = api_client(make_token()).get(PROJECTS)
    assert response.status_code == 503
    assert "JWKS" in _error(response)


def test_unknown_tenant_is_403(make_token, api_client):
    response = api_client(make_token("nobody")).get(PROJECTS)
    assert response.status_code == 403
    assert "'nobody' is not provisioned" in _error(response)


def test_tenant_still_provisioning_is_503(make_token, api_client):
    Tenant.objects.create(schema_name="halfway", name="Halfway")
    response = api_client(make_token("halfway")).get(PROJECTS)
    assert response.status_code == 503
    assert "still being provisioned" in _error(response)


def test_connection_info_that_disagrees_with_the_tenant_record_is_403(make_token, api_client):
    response = api_client(make_token(TENANT_A, database="cluster-eu-2")).get(PROJECTS)
    assert response.status_code == 403
    assert "does not match" in _error(response)


def test_silo_tenant_on_another_database_is_refused_until_silo_is_built(make_token, api_client):
    # given a tenant whose record and platform info agree it lives on its own database
    Tenant.objects.create(schema_name="siloed", name="Siloed", database="silo-siloed", status=Tenant.Status.ACTIVE)
    # when its user calls us
    response = api_client(make_token("siloed", database="silo-siloed")).get(PROJECTS)
    # then we refuse instead of reading this deployment's schema
    assert response.status_code == 403
    assert "does not serve" in _error(response)


def test_viewer_can_read_but_not_write(make_token, api_client):
    client = api_client(make_token(role="viewer"))
    assert client.get(PROJECTS).status_code == 200
    response = client.post(PROJECTS, {"name": "nope"}, format="json")
    assert response.status_code == 403
    assert "read-only" in _error(response)


def test_tenant_a_never_sees_tenant_b_data(make_token, api_client):
    # given a project in tenant B
    b_client = api_client(make_token(TENANT_B))
    secret = b_client.post(PROJECTS, {"name": "globex-secret"}, format="json").json()
    # when tenant A lists, fetches by B's id, and tries to change or delete it
    a_client = api_client(make_token(TENANT_A))
    listed = a_client.get(PROJECTS).json()["results"]
    fetched = a_client.get(f"{PROJECTS}{secret['id']}")
    a_client.patch(f"{PROJECTS}{secret['id']}", {"name": "pwned"}, format="json")
    a_client.delete(f"{PROJECTS}{secret['id']}")
    # then nothing of B is visible or changed
    assert "globex-secret" not in [p["name"] for p in listed]
    assert fetched.status_code == 404 or fetched.json()["name"] != "globex-secret"
    assert b_client.get(f"{PROJECTS}{secret['id']}").json()["name"] == "globex-secret"


def test_another_workspace_project_is_404_as_a_missing_one(make_token, api_client):
    theirs = api_client(make_token(workspace="ws-other")).post(PROJECTS, {"name": "theirs"}, format="json").json()
    response = api_client(make_token(workspace="ws-1")).get(f"{PROJECTS}{theirs['id']}")
    assert response.status_code == 404
    assert response.json() == {"message": f"Project {theirs['id']} does not exist.", "extra": {}}


def test_redis_down_does_not_stop_authentication(make_token, api_client, platform, settings):
    # given a cache on a port where nothing listens
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    client = api_client(make_token())
    asked_before = platform.introspections()
    # when the same token is used twice, then the platform is asked each time instead of failing
    assert client.get(PROJECTS).status_code == 200
    assert client.get(PROJECTS).status_code == 200
    assert platform.introspections() == asked_before + 2
