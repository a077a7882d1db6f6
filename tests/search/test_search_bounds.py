"""Bounds on a search: the statement timeout (a 422 that says to narrow the query), the query language's size limits
(a 400 naming the limit and its setting), the per-tenant concurrency share and the per-user and per-tenant API rates
(a 429 with Retry-After)."""

import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connections

from mlops.slots import slot_acquire, slot_release
from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db(databases=["default", "reader"])


def _url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/search"


@pytest.fixture
def client(search_data, make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.fixture
def throttle_counts_cleared():
    """Rate windows outlive a test in Redis: each rate test starts from zero requests."""
    from mlops.redis_pool import redis_client

    redis = redis_client()
    for key in redis.scan_iter(match="*throttle:*"):
        redis.delete(key)
    yield


@contextmanager
def datarows_locked():
    """Another session holds tenant A's datarow table locked, so every search statement that reads it waits. The
    server ends that session 5 s into the wait, so code without a timeout fails slowly rather than hangs."""
    with psycopg.connect(**connections["default"].get_connection_params()) as blocker:
        blocker.execute("SET idle_in_transaction_session_timeout = '5s'")
        blocker.execute(f"LOCK TABLE {TENANT_A}.datasets_datarow IN ACCESS EXCLUSIVE MODE")
        yield
        blocker.rollback()


def test_a_search_that_reaches_the_statement_timeout_is_a_422_that_says_to_narrow_the_query(
    search_data, client, settings
):
    # given
    settings.SEARCH_STATEMENT_TIMEOUT_MS = 200
    # when
    with datarows_locked():
        started = time.monotonic()
        response = client.post(
            _url(search_data.project_id), {"query": "tags = 'night'", "facets": ["tags"]}, format="json"
        )
        took = time.monotonic() - started
    # then
    assert response.status_code == 422, response.content
    body = response.json()
    assert "narrow the query" in body["message"]
    assert body["extra"] == {"limit": "SEARCH_STATEMENT_TIMEOUT_MS", "max": 200}
    assert took < 3


@pytest.mark.parametrize(
    ("setting", "value", "query", "where"),
    [
        ("SEARCH_MAX_IN_VALUES", 3, "metadata.weather IN ('a', 'b', 'c', 'd')", (1, 37)),
        ("SEARCH_MAX_PATTERN_LENGTH", 5, "external_id LIKE 'img-00%'", (1, 18)),
        ("SEARCH_MAX_PATTERN_LENGTH", 5, "MATCH(metadata.caption, 'red car')", (1, 25)),
        ("SEARCH_MAX_PATTERN_WILDCARDS", 2, "uri LIKE '%a_b%'", (1, 10)),
        ("SEARCH_MAX_DEPTH", 2, "NOT (tags = 'a' OR NOT tags = 'b')", None),
        ("SEARCH_MAX_QUERY_CHARS", 20, "tags = 'night' AND tags = 'day'", (1, 1)),
    ],
)
def test_a_query_over_a_size_limit_is_a_400_naming_the_limit_its_setting_and_where(
    setting, value, query, where, search_data, client, settings
):
    # given
    setattr(settings, setting, value)
    # when
    response = client.post(_url(search_data.project_id), {"query": query}, format="json")
    # then
    assert response.status_code == 400, response.content
    body = response.json()
    assert setting in body["message"] and str(value) in body["message"]
    assert body["extra"]["limit"] == setting and body["extra"]["max"] == value
    if where is not None:
        assert (body["extra"]["line"], body["extra"]["column"]) == where


def test_escaped_wildcards_are_not_counted(search_data, client, settings):
    settings.SEARCH_MAX_PATTERN_WILDCARDS = 1
    response = client.post(_url(search_data.project_id), {"query": r"uri LIKE '\%\_\%%'"}, format="json")
    assert response.status_code == 200, response.content


def test_more_facets_than_the_limit_is_a_400_naming_it(search_data, client, settings):
    settings.SEARCH_MAX_FACETS = 2
    response = client.post(
        _url(search_data.project_id), {"facets": ["tags", "label.class", "metadata.weather"]}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["extra"]["limit"] == "SEARCH_MAX_FACETS"
    assert "SEARCH_MAX_FACETS" in response.json()["extra"]["fields"]["facets"][0]


def test_a_tenant_past_its_concurrent_searches_gets_a_429_with_retry_after(search_data, client, settings):
    # given every slot of tenant A held by searches still running
    settings.SEARCH_MAX_CONCURRENT_PER_TENANT = 2
    held = [slot_acquire(key=f"search:{TENANT_A}", limit=2, lease_seconds=60) for _ in range(2)]
    assert all(held)
    try:
        # when
        refused = client.post(_url(search_data.project_id), {}, format="json")
    finally:
        for token in held:
            slot_release(key=f"search:{TENANT_A}", token=token)
    # then
    assert refused.status_code == 429, refused.content
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["extra"]["limit"] == "SEARCH_MAX_CONCURRENT_PER_TENANT"
    assert "SEARCH_MAX_CONCURRENT_PER_TENANT" in refused.json()["message"]
    # and once they have finished, searches run again
    assert client.post(_url(search_data.project_id), {}, format="json").status_code == 200


def test_a_slot_whose_holder_died_is_free_when_its_lease_ends(search_data, client, settings):
    # given a process that took the only slot and never gave it back
    settings.SEARCH_MAX_CONCURRENT_PER_TENANT = 1
    assert slot_acquire(key=f"search:{TENANT_A}", limit=1, lease_seconds=0.3)
    assert client.post(_url(search_data.project_id), {}, format="json").status_code == 429
    # when its lease has ended
    time.sleep(0.4)
    # then
    assert client.post(_url(search_data.project_id), {}, format="json").status_code == 200


def test_a_user_past_its_rate_gets_a_429_with_retry_after_and_others_do_not(
    search_data, make_token, api_client, settings, throttle_counts_cleared
):
    # given
    settings.API_RATE_PER_USER = "3/min"
    greedy, other = api_client(make_token(TENANT_A)), api_client(make_token(TENANT_A))
    # when
    answers = [greedy.get("/api/v1/projects/").status_code for _ in range(3)]
    refused = greedy.get("/api/v1/projects/")
    # then
    assert answers == [200, 200, 200]
    assert refused.status_code == 429, refused.content
    assert 1 <= int(refused["Retry-After"]) <= 61
    assert refused.json()["extra"] == {
        "limit": "API_RATE_PER_USER",
        "rate": "3/min",
        "retry_after": int(refused["Retry-After"]),
    }
    assert other.get("/api/v1/projects/").status_code == 200


def test_a_tenant_past_its_rate_gets_a_429_and_other_tenants_do_not(
    search_data, make_token, api_client, settings, throttle_counts_cleared
):
    # given
    settings.API_RATE_PER_TENANT = "4/min"
    users = [api_client(make_token(TENANT_A)) for _ in range(4)]
    # when
    answers = [user.get("/api/v1/projects/").status_code for user in users]
    refused = api_client(make_token(TENANT_A)).post(_url(search_data.project_id), {}, format="json")
    # then
    assert answers == [200] * 4
    assert refused.status_code == 429, refused.content
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["extra"]["limit"] == "API_RATE_PER_TENANT"
    assert api_client(make_token(TENANT_B)).get("/api/v1/projects/").status_code == 200
