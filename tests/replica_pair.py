"""A PostgreSQL primary and streaming replica of the test's own, and Django's two aliases pointed at them.

The normal suite runs on whatever DATABASE_URL / DATABASE_READER_URL say, with `reader` a TEST MIRROR of
`default` (one server). Tests that must see which server answered start this pair on free loopback ports
in a tmp folder instead, and stop it when they are done.
"""

import copy
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devstack.postgres import SUPERUSER, PostgresNode, free_port, start_primary_and_replica
from mlops.db_routing import READER, WRITER

DATABASE = "mlops_routing"


@dataclass
class ReplicaPair:
    primary: PostgresNode
    replica: PostgresNode
    database: str = DATABASE

    def wait_for_replay(self, timeout: float = 10.0) -> None:
        """Block until the replica has replayed everything the primary has written so far (WAL is per server)."""
        with psycopg.connect(self.primary.url(), autocommit=True) as primary:
            (target,) = primary.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.replica.url(), autocommit=True) as replica:
            while time.monotonic() < deadline:
                (caught_up,) = replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()
                if caught_up:
                    return
                time.sleep(0.02)
        raise TimeoutError(f"the replica did not replay up to {target} in {timeout}s")


def _two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


@contextmanager
def running_replica_pair() -> Iterator[ReplicaPair]:
    """initdb a primary, `pg_basebackup -R` a replica from it, create the database; stop and delete both on exit."""
    # A folder straight under /tmp, not pytest's tmp_path: when the tests run as root the servers run as an
    # unprivileged user who keeps root's group, and pytest's root-owned folders give that group no access.
    root = Path(tempfile.mkdtemp(prefix="mlops-replica-pair-"))
    primary_port, replica_port = _two_free_ports()
    primary = PostgresNode(root / "primary", primary_port)
    replica = PostgresNode(root / "replica", replica_port)
    try:
        start_primary_and_replica(root, primary_port, replica_port)
        with psycopg.connect(primary.url(), autocommit=True) as server:
            server.execute(f'CREATE DATABASE "{DATABASE}"')
            # devstack commits asynchronously; a commit must reach the WAL before it returns (as on Aurora),
            # or wait_for_replay() could read a WAL position from before the commit it waits for.
            server.execute("ALTER SYSTEM SET synchronous_commit = on")
            server.execute("SELECT pg_reload_conf()")
        pair = ReplicaPair(primary, replica)
        pair.wait_for_replay()
        yield pair
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def django_databases_on(pair: ReplicaPair) -> Iterator[None]:
    """Point `default` at the primary and `reader` at the replica, in every thread, then put everything back.

    Both places matter: `settings.DATABASES` (the very dict `connections.settings` holds) is what any thread
    builds its connections from, while this thread's `reader` wrapper was made a mirror of `default` by the
    test database setup and keeps that settings_dict object until it is replaced here.
    """
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections

    configured = {alias: settings.DATABASES[alias] for alias in (WRITER, READER)}
    this_thread = {alias: connections[alias].settings_dict for alias in (WRITER, READER)}
    connections.close_all()
    for alias, node in ((WRITER, pair.primary), (READER, pair.replica)):
        pointed = copy.deepcopy(configured[alias])
        pointed.update(HOST="127.0.0.1", PORT=str(node.port), NAME=pair.database, USER=SUPERUSER, PASSWORD="")
        settings.DATABASES[alias] = pointed
        connections[alias].settings_dict = pointed
    # Content type ids differ between databases.
    ContentType.objects.clear_cache()
    try:
        yield
    finally:
        connections.close_all()
        for alias in (WRITER, READER):
            settings.DATABASES[alias] = configured[alias]
            connections[alias].settings_dict = this_thread[alias]
        ContentType.objects.clear_cache()
