"""The ASGI server runs each request in a thread of its own: its database and Redis connections must still be
reused across requests (a pool per process), not opened per request.

A real uvicorn serves the test database; the connections it opened are read from PostgreSQL's own session
counter (pg_stat_database.sessions, flushed when the server's backends exit) and Redis' connection counter.
"""

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connections

from tests.conftest import TENANT_A, TENANT_B
from tests.live_services import live_environment, start_asgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

REQUESTS = 20


def _writer_sessions() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _redis_connections() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).info("stats")["total_connections_received"]


def test_requests_reuse_database_and_redis_connections(auth0, platform, make_token, live_log_dir):
    # given: a server that answered once (its pools are open)
    server = start_asgi_server(live_environment(auth0, platform), live_log_dir)
    token = make_token(TENANT_A, role="viewer")
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            assert client.get("/api/v1/projects/").status_code == 200
            sessions_before, redis_before = _writer_sessions(), _redis_connections()
            # when
            statuses = {client.get("/api/v1/projects/").status_code for _ in range(REQUESTS)}
            redis_opened = _redis_connections() - redis_before
    finally:
        server.stop()  # its backends exit and report the sessions they counted
    sessions_opened = _writer_sessions() - sessions_before
    # then: every request was served, with a handful of connections at most (a pool may open a few), not one each
    assert statuses == {200}
    assert sessions_opened < REQUESTS / 4, f"{sessions_opened} writer connections for {REQUESTS} requests"
    assert redis_opened < REQUESTS / 4, f"{redis_opened} Redis connections for {REQUESTS} requests"


def test_a_pooled_connection_never_carries_one_tenants_schema_into_anothers_request(
    auth0, platform, make_token, live_log_dir
):
    # given: a project only tenant A has, made through the server, and a pool of at most two connections per alias
    server = start_asgi_server(
        live_environment(auth0, platform, DATABASE_POOL_MIN_SIZE=1, DATABASE_POOL_MAX_SIZE=2), live_log_dir
    )
    token_a, token_b = make_token(TENANT_A), make_token(TENANT_B)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            created = client.post(
                "/api/v1/projects/", json={"name": "only-in-acme"}, headers={"Authorization": f"Bearer {token_a}"}
            )
            assert created.status_code == 201, created.text
            # when: the two tenants' requests alternate over the same few connections
            seen = {TENANT_A: [], TENANT_B: []}
            for _ in range(10):
                for tenant, token in ((TENANT_A, token_a), (TENANT_B, token_b)):
                    answer = client.get("/api/v1/projects/", headers={"Authorization": f"Bearer {token}"})
                    assert answer.status_code == 200, answer.text
                    seen[tenant].append({project["name"] for project in answer.json()["results"]})
    finally:
        server.stop()
    # then
    assert all("only-in-acme" in names for names in seen[TENANT_A])
    assert not any("only-in-acme" in names for names in seen[TENANT_B])
