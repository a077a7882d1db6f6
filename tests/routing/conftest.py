import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.db.backends.signals import connection_created

from mlops import db_routing
from tests.conftest import TENANT_A, TENANT_B
from tests.replica_pair import django_databases_on, running_replica_pair


@dataclass(frozen=True)
class AnsweredQuery:
    alias: str
    in_recovery: bool
    search_path: str
    sql: str


class ServerLog:
    """Which server answered each query: right after a query succeeds, its own connection is asked."""

    def __init__(self):
        self.queries: list[AnsweredQuery] = []

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        connection = context["connection"]
        # The raw psycopg connection, so that this question is neither logged nor routed.
        in_recovery, search_path = connection.connection.execute(
            "SELECT pg_is_in_recovery(), current_setting('search_path')"
        ).fetchone()
        self.queries.append(AnsweredQuery(connection.alias, in_recovery, search_path, str(sql)))
        return result

    def touching(self, table: str) -> list[AnsweredQuery]:
        return [query for query in self.queries if table in query.sql]

    def answered_by_replica(self, table: str) -> set[bool]:
        """{True}: every query on `table` was answered by the replica; {False}: by the primary."""
        return {query.in_recovery for query in self.touching(table)}

    def install(self, sender, connection, **kwargs) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


@pytest.fixture(scope="package")
def replica_pair(django_db_blocker):
    """A real primary and `pg_basebackup -R` streaming replica for this package, both aliases pointed at them.

    Why it is built this way (pytest-django 4.14):
    - It holds `django_db_blocker.unblock()` instead of using the `db` fixture: `db` wraps each test in a
      transaction, and a transaction pins every read to the writer, which would hide the routing under test.
      The blocker patches the connection class, so the unblock also covers the threads the tests start.
    - It does not use `django_db_setup`: that creates the test database only for aliases that tests marked
      `django_db` ask for (none here), and tests/conftest.py then provisions tenants on whatever database is
      configured. Nothing here needs it: the pair gets its own migrations and tenants, so this package runs
      the same alone or amid the suite, before or after the session's test database exists.
    - Both aliases are pointed back when it ends (tests/replica_pair.py), before the pair is stopped.
    """
    from tenancy.services import tenant_provision

    with running_replica_pair() as pair, django_db_blocker.unblock(), django_databases_on(pair):
        call_command("migrate_schemas", "--shared", verbosity=0)
        tenant_provision(schema_name=TENANT_A, name="Acme")
        tenant_provision(schema_name=TENANT_B, name="Globex")
        pair.wait_for_replay()
        yield pair


@pytest.fixture(scope="package")
def package_server_log(replica_pair) -> Iterator[ServerLog]:
    """Logs every query of every connection (any thread) opened while the package runs."""
    log = ServerLog()
    connection_created.connect(log.install)
    yield log
    connection_created.disconnect(log.install)
    for alias in connections:
        if log in connections[alias].execute_wrappers:
            connections[alias].execute_wrappers.remove(log)


@pytest.fixture(autouse=True)
def routing_state(package_server_log, settings):
    """Each test starts with a healthy reader, fresh (so logged) connections and known routing settings."""
    db_routing._reader_outage = None
    db_routing._reader_replayed = 0
    # Positions recorded by other servers of the session (the suite's own database) mean nothing on this pair.
    db_routing.redis_client().delete(*(db_routing._tenant_position_key(schema) for schema in (TENANT_A, TENANT_B)))
    settings.READ_YOUR_WRITES_SECONDS = 5.0
    settings.READER_DOWN_SECONDS = 30.0
    connections.close_all()
    yield
    connections.close_all()


@pytest.fixture
def server_log(package_server_log) -> ServerLog:
    package_server_log.queries.clear()
    return package_server_log


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        """Quiet: the tests assert on what matters."""


@contextmanager
def serving_one_request_at_a_time() -> Iterator[str]:
    """The Django app behind a real WSGI server in one thread, like a sync worker: Django's request_started and
    request_finished signals run (the test client skips their connection checks) and the thread's database
    connections live from one request to the next (CONN_MAX_AGE)."""
    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_QuietHandler)

    def serve():
        try:
            server.serve_forever(poll_interval=0.05)
        finally:
            connections.close_all()

    thread = threading.Thread(target=serve, name="wsgi-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def live_server_url(replica_pair) -> Iterator[str]:
    with serving_one_request_at_a_time() as url:
        yield url
