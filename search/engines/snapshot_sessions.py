"""Several read statements run at once, each in a session of its own, all on one snapshot.

PostgreSQL runs one statement in one process (parallel workers aside), so the exact total and facets of a large match
set, which read different tables, can take two cores instead of one when they are separate statements on separate
sessions. They must still agree with each other: the first session opens a REPEATABLE READ, READ ONLY transaction and
exports its snapshot (pg_export_snapshot(), which hot standbys serve since PostgreSQL 10), and every other session
imports it (SET TRANSACTION SNAPSHOT) before its statement, so all of them see the same committed data. The exporting
transaction stays open until every other session has finished, which is what keeps the snapshot importable.

Django's connections belong to a thread, so each extra statement runs in a thread with its own connection (a pooled
one in web processes), on the caller's tenant and database alias, under the caller's statement timeout, and in the
caller's context, so a client that disconnects cancels these sessions too (mlops/statements.py).
"""

import contextvars
from concurrent.futures import ThreadPoolExecutor

from django.db import connections, transaction

from mlops.statements import current_request_connections
from search.engines.postgres_sql import CompiledQuery

_READ_ONLY_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def can_share_snapshot(using: str) -> bool:
    """Inside the caller's own transaction the statements must see its uncommitted writes, which no other session
    can: they then run one after another on the caller's connection."""
    return not connections[using].in_atomic_block


def fetch_all_in_one_snapshot(using: str, statements: list[CompiledQuery]) -> list[list[tuple]]:
    """The rows of each statement, in order; the first runs on the caller's connection, each other one on a session
    of its own at the same time. An error in any of them is raised here, after every session has ended."""
    tenant = connections[using].tenant
    with transaction.atomic(using=using), connections[using].cursor() as db:
        db.execute(_READ_ONLY_SNAPSHOT)
        db.execute("SELECT pg_export_snapshot(), current_setting('statement_timeout')")
        snapshot, timeout = db.fetchone()
        with ThreadPoolExecutor(max_workers=max(len(statements) - 1, 1), thread_name_prefix="search-snapshot") as pool:
            others = [
                pool.submit(
                    contextvars.copy_context().run, _fetch_all_in_snapshot, using, tenant, snapshot, timeout, statement
                )
                for statement in statements[1:]
            ]
            db.execute(statements[0].sql, statements[0].params)
            first = db.fetchall()
            return [first, *(other.result() for other in others)]


def _fetch_all_in_snapshot(using: str, tenant, snapshot: str, timeout: str, statement: CompiledQuery) -> list[tuple]:
    connection = connections[using]
    try:
        connection.set_tenant(tenant)
        with transaction.atomic(using=using), connection.cursor() as db:
            db.execute(_READ_ONLY_SNAPSHOT)
            db.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
            db.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])
            db.execute(statement.sql, statement.params)
            return db.fetchall()
    finally:
        request = current_request_connections()
        if request is not None:
            request.discard(connection)
        connection.close()  # back to the pool in web processes; the thread's connection is never used again
