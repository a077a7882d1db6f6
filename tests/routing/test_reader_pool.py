"""A reader whose connection pool is full is busy, not down: the read is shed with a 503 and Retry-After, the reader is
not marked down, and reads go back to it as soon as a connection is free. Web processes pool their connections
(DATABASE_POOL); here the reader alias gets a pool of one connection, which another thread holds."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connections

from mlops import db_routing
from mlops.db_routing import READER
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import project_make

PROJECTS = "projects_project"


@pytest.fixture
def reader_pool_of_one(replica_pair, monkeypatch) -> Iterator[None]:
    reader = connections[READER]
    reader.close()
    monkeypatch.setitem(reader.settings_dict, "CONN_MAX_AGE", 0)
    monkeypatch.setitem(
        reader.settings_dict,
        "OPTIONS",
        {**reader.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1, "timeout": 0.5}},
    )
    yield
    connections[READER].close()
    connections[READER].close_pool()


@contextmanager
def holding_the_only_reader_connection() -> Iterator[None]:
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            connections[READER].ensure_connection()
            taken.set()
            release.wait(10)
        finally:
            connections[READER].close()  # back to the pool

    thread = threading.Thread(target=hold, name="holds-the-reader", daemon=True)
    thread.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def test_a_full_reader_pool_sheds_the_read_without_marking_the_reader_down(
    make_token, api_client, replica_pair, server_log, reader_pool_of_one
):
    with tenant_scope(TENANT_A):
        project = project_make(name="Read while busy")
    replica_pair.wait_for_replay()
    client = api_client(make_token(TENANT_A))
    server_log.queries.clear()

    # when every reader connection is in use past the pool's wait
    with holding_the_only_reader_connection():
        busy = client.get(f"/api/v1/projects/{project.pk}")

    # then the read is shed with the error shape and a Retry-After, not moved to the writer, and the reader stays up
    assert busy.status_code == 503, busy.content
    assert busy["Retry-After"] == "1"
    assert busy.json() == {
        "message": "The database is busy (couldn't get a connection after 0.50 sec); retry in 1 s.",
        "extra": {"retry_after": 1},
    }
    assert server_log.touching(PROJECTS) == []
    assert db_routing.reader_outage() is None

    # and once a connection is free the next read goes to the reader
    fetched = client.get(f"/api/v1/projects/{project.pk}")
    assert fetched.status_code == 200 and fetched.json()["name"] == "Read while busy"
    assert server_log.answered_by_replica(PROJECTS) == {True}
