"""A reader that dies or hangs costs one short failure, then reads go to the writer until READER_DOWN_SECONDS
have passed; /readyz reports it. The stopped-replica test goes through a real WSGI server (see conftest):
Django's per-request connection checks, which catch a connection that outlived its replica, do not run under
the test client."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis
from django.conf import settings as django_settings

from devstack.postgres import free_port
from mlops import db_routing
from mlops.db_routing import READER
from projects.models import Project
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import project_make

PROJECTS = "projects_project"


class SilentServer:
    """A TCP port that accepts connections and never answers, like a frozen server; it counts who knocked."""

    def __init__(self, port: int = 0):
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                self.accepted.append(self.listener.accept()[0])
            except TimeoutError:
                continue

    def knocks(self) -> int:
        time.sleep(0.2)  # let the accept loop take whatever the kernel already queued
        return len(self.accepted)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        for connection in (*self.accepted, self.listener):
            connection.close()


@contextmanager
def silent_server(port: int = 0) -> Iterator[SilentServer]:
    server = SilentServer(port)
    try:
        yield server
    finally:
        server.close()


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _seed_project(replica_pair, name: str) -> Project:
    with tenant_scope(TENANT_A):
        project = project_make(name=name)
    replica_pair.wait_for_replay()
    return project


def test_a_stopped_replica_is_marked_down_then_read_again_once_back(
    make_token, replica_pair, server_log, live_server_url, settings, capsys
):
    settings.READER_DOWN_SECONDS = 2
    project = _seed_project(replica_pair, "Survives a stopped replica")
    detail = f"/api/v1/projects/{project.pk}"
    client = _client(live_server_url, make_token(TENANT_A))

    # given the server's reader connection is open
    server_log.queries.clear()
    assert client.get(detail).status_code == 200
    assert server_log.answered_by_replica(PROJECTS) == {True}

    # when the replica stops under it, the next request still succeeds, from the writer
    replica_pair.replica.stop()
    server_log.queries.clear()
    started = time.monotonic()
    first = client.get(detail)
    first_failure_seconds = time.monotonic() - started
    assert first.status_code == 200, first.text
    assert first.json()["name"] == "Survives a stopped replica"
    assert server_log.answered_by_replica(PROJECTS) == {False}
    assert first_failure_seconds < 1.0
    outage = db_routing.reader_outage()
    assert outage is not None

    # and while it is marked down nothing tries it again: a listener on its port hears nothing
    with silent_server(replica_pair.replica.port) as replica_port:
        second = client.get(detail)
        ready = client.get("/readyz")
        assert replica_port.knocks() == 0
    assert second.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True and ready.json()["degraded"] is True
    reader_check = ready.json()["checks"]["reader"]
    assert reader_check["ok"] is False and reader_check["reads_from"] == "default"
    assert ready.json()["checks"]["writer"] == {"ok": True, "in_recovery": False}
    assert ready.json()["checks"]["redis"] == {"ok": True}

    # when the replica is back and READER_DOWN_SECONDS have passed, reads return to it
    replica_pair.replica.start()
    replica_pair.replica.wait_until_accepting()
    time.sleep(outage.seconds_left() + 0.05)
    server_log.queries.clear()
    assert client.get(detail).status_code == 200
    assert server_log.answered_by_replica(PROJECTS) == {True}
    ready = client.get("/readyz").json()
    assert ready["degraded"] is False
    assert ready["checks"]["reader"] == {"ok": True, "in_recovery": True, "reads_from": READER}
    with capsys.disabled():
        print(
            f"\n[routing] first read after the replica stopped: {first_failure_seconds * 1000:.0f} ms "
            f"(whole request, reader fallback included)"
        )


def test_a_hung_reader_costs_at_most_its_connect_timeout(
    make_token, api_client, replica_pair, server_log, monkeypatch, capsys
):
    project = _seed_project(replica_pair, "Survives a hung replica")
    client = api_client(make_token(TENANT_A))
    connect_timeout = django_settings.DATABASES[READER]["OPTIONS"]["connect_timeout"]
    # a reader that accepts connections and never answers, as a frozen instance does
    server_log.queries.clear()
    with silent_server() as hung_reader:
        monkeypatch.setitem(django_settings.DATABASES[READER], "PORT", str(hung_reader.port))
        started = time.monotonic()
        first = client.get(f"/api/v1/projects/{project.pk}")
        first_failure_seconds = time.monotonic() - started
        started = time.monotonic()
        second = client.get(f"/api/v1/projects/{project.pk}")
        second_seconds = time.monotonic() - started
        assert hung_reader.knocks() == 1
    assert first.status_code == 200 and second.status_code == 200
    assert server_log.answered_by_replica(PROJECTS) == {False}
    # psycopg and libpq raise a connect_timeout under 2 s to 2 s; the router's probe keeps it at 1 s
    assert connect_timeout <= first_failure_seconds < connect_timeout + 0.8
    assert second_seconds < 0.5
    with capsys.disabled():
        print(
            f"\n[routing] first read with a hung reader: {first_failure_seconds * 1000:.0f} ms; "
            f"next: {second_seconds * 1000:.0f} ms"
        )


def test_redis_down_pins_reads_to_the_writer_instead_of_failing(
    make_token, api_client, replica_pair, server_log, monkeypatch
):
    # Only the read-your-writes store is down here: authentication keeps its own (working) cache.
    dead_redis = redis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    monkeypatch.setattr(db_routing, "redis_client", lambda: dead_redis)
    author = api_client(make_token(TENANT_A))

    created = author.post("/api/v1/projects/", {"name": "Without Redis"}, format="json")
    assert created.status_code == 201, created.content
    server_log.queries.clear()
    fetched = author.get(f"/api/v1/projects/{created.json()['id']}")

    assert fetched.status_code == 200 and fetched.json()["name"] == "Without Redis"
    assert server_log.answered_by_replica(PROJECTS) == {False}
