"""Bounds on the statements a web request runs: a timeout per statement, and a cancel when its client goes away.

Django's ASGI handler notices a client that disconnects, but our views are sync and run in a thread it cannot stop,
so their statements would run to the end. CancelStatementsOnDisconnect (around the HTTP application) collects the
database connections each request opens (the connection_created signal, carried to the request's threads by a
context variable) and, when the ASGI server reports `http.disconnect` before the response is complete, sends
PostgreSQL a cancel for each. A statement the request starts after the cancel still ends at its timeout.
"""

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DatabaseError, connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from psycopg import Error as PsycopgError
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

logger = logging.getLogger(__name__)


def statement_canceled(error: BaseException) -> bool:
    """Whether a database error is PostgreSQL's cancel: a statement timeout or a cancel request."""
    return isinstance(error, DatabaseError) and isinstance(error.__cause__, pg_errors.QueryCanceled)


@contextmanager
def statement_timeout(using: str, milliseconds: int) -> Iterator[None]:
    """Every statement on `using` in the block ends after `milliseconds`; then the session's own value again (the
    web process's REQUEST_STATEMENT_TIMEOUT_MS, or none). A session-level SET, not SET LOCAL: a search runs in
    autocommit, its parallel facet sessions read the value from this one (search/engines/snapshot_sessions.py)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{milliseconds}ms"])
    try:
        yield
    finally:
        # In a failed transaction the SET was made inside it and its rollback undoes it; RESET cannot run there (nor
        # on a broken connection, which is not reused).
        raw = connection.connection
        if raw is not None and raw.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")


class RequestConnections:
    """The database connections one request opened, to cancel if its client leaves before the response ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._connections: list[tuple[object, object]] = []  # (Django's wrapper, the psycopg connection it held)
        self.finished = False  # the response is complete: the connections may be serving other requests next

    def add(self, wrapper) -> None:
        with self._lock:
            self._connections.append((wrapper, wrapper.connection))

    def discard(self, wrapper) -> None:
        """Before a connection goes back to the pool in the middle of the request (another one may take it)."""
        with self._lock:
            self._connections = [(w, raw) for w, raw in self._connections if w is not wrapper]

    def cancel(self) -> None:
        with self._lock:
            if self.finished:
                return
            # A wrapper that no longer holds the connection it opened has handed it back: not ours to cancel.
            held = [raw for wrapper, raw in self._connections if wrapper.connection is raw and not raw.closed]
            for raw in held:
                try:
                    raw.cancel_safe(timeout=2)
                except PsycopgError as error:  # the statement then ends at its timeout
                    logger.warning("could not cancel the statements of a disconnected client: %s", error)


_current: ContextVar[RequestConnections | None] = ContextVar("request_connections", default=None)


def current_request_connections() -> RequestConnections | None:
    return _current.get()


@receiver(connection_created)
def _register_request_connection(sender, connection, **kwargs) -> None:
    # Each checkout from the pool sends this too (Django connects the wrapper anew for every request).
    request = _current.get()
    if request is not None:
        request.add(connection)


class CancelStatementsOnDisconnect:
    """ASGI middleware for HTTP: a client that disconnects before its response is complete cancels the statements
    its request is running."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = RequestConnections()

        async def watched_receive():
            message = await receive()
            if message["type"] == "http.disconnect":
                await asyncio.to_thread(request.cancel)
            return message

        async def watched_send(message):
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                request.finished = True
            await send(message)

        token = _current.set(request)
        try:
            return await self.app(scope, watched_receive, watched_send)
        finally:
            _current.reset(token)
