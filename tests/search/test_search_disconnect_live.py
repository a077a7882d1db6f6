"""Through a real ASGI server (uvicorn) and PostgreSQL: a client that disconnects cancels its search's statements,
and every statement of a web request ends at REQUEST_STATEMENT_TIMEOUT_MS."""

import threading
import time
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from django.db import connections

from tests.conftest import TENANT_A
from tests.datasets.conftest import tenant_dataset  # noqa: F401 (fixture)
from tests.live_services import (  # noqa: F401 (live_log_dir is a fixture)
    _database_url,
    live_environment,
    live_log_dir,
    start_asgi_server,
    wait_until,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]


@pytest.fixture(scope="module")
def server_on_the_writer(django_db_setup, auth0, platform, live_log_dir):
    """Reads on the writer too, so the test's lock (and pg_stat_activity) is where the requests run; a request
    timeout of 1 s (a search sets its own, 10 s)."""
    writer = _database_url(connections["default"].settings_dict)
    server = start_asgi_server(
        live_environment(auth0, platform, DATABASE_READER_URL=writer, REQUEST_STATEMENT_TIMEOUT_MS=1000), live_log_dir
    )
    yield server
    server.stop()


@contextmanager
def datarows_locked(params: dict):
    """Another session holds tenant A's datarow table, so every statement that reads it waits (the server ends that
    session after 20 s, and a search's own timeout is 10 s: both well past the checks)."""
    with psycopg.connect(**params) as blocker:
        blocker.execute("SET idle_in_transaction_session_timeout = '20s'")
        blocker.execute(f"LOCK TABLE {TENANT_A}.datasets_datarow IN ACCESS EXCLUSIVE MODE")
        yield blocker
        blocker.rollback()


def _waiting_searches(observer, blocker_pid: int) -> list[int]:
    return [
        pid
        for (pid,) in observer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s AND state = 'active' "
            "AND wait_event_type = 'Lock' AND query LIKE '%%datasets_datarow%%'",
            [blocker_pid],
        ).fetchall()
    ]


def test_a_client_that_disconnects_cancels_its_search_statements(
    server_on_the_writer,
    tenant_dataset,
    make_token,
):
    params = connections["default"].get_connection_params()
    token = make_token(TENANT_A)
    # given another session holding the datarow table, so the search's statement waits on it
    with psycopg.connect(**params, autocommit=True) as observer, datarows_locked(params) as blocker:
        blocker_pid = blocker.info.backend_pid
        answered = []

        def search() -> None:
            try:
                answered.append(
                    httpx.post(
                        f"{server_on_the_writer.url}/api/v1/projects/{tenant_dataset.project_id}/search",
                        json={"query": ""},
                        timeout=2,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )
            except httpx.TimeoutException:
                pass  # the client gives up and closes its connection

        client = threading.Thread(target=search)
        client.start()
        waiting = wait_until(
            lambda: _waiting_searches(observer, blocker_pid),
            timeout=10,
            what="the search to wait on the lock",
            logs_of=(server_on_the_writer,),
        )
        # when the client has given up
        client.join()
        # then its statement is cancelled within a couple of seconds, the lock still held
        wait_until(
            lambda: not set(waiting) & set(_waiting_searches(observer, blocker_pid)),
            timeout=3,
            what="the search's statement to be cancelled",
            logs_of=(server_on_the_writer,),
        )
        assert answered == []


def test_a_web_request_statement_ends_at_the_request_timeout_with_a_503(
    server_on_the_writer,
    tenant_dataset,
    make_token,
):
    token = make_token(TENANT_A)
    with datarows_locked(connections["default"].get_connection_params()):
        started = time.monotonic()
        response = httpx.get(
            f"{server_on_the_writer.url}/api/v1/projects/{tenant_dataset.project_id}/datasets/"
            f"{tenant_dataset.pk}/datarows",
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
        took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["extra"] == {"limit": "REQUEST_STATEMENT_TIMEOUT_MS"}
    assert took < 5
