"""Aurora read/write routing: reads to the reader, writes and everything that must see them to the writer.

The pin lives in context variables (one per request or task, safe under ASGI where many requests share a
thread) and outlives the request through a short-lived Redis key per tenant and user, so a POST followed by
a GET reads its own write. A task inherits the pin of the context that enqueued it.

What a job announces (its websocket, and any read that saw it) every user of the tenant must then read: each job
revision, and a tenant's provisioning, record the writer's WAL position for the tenant in Redis
(tenant_reads_see_writer, a monotonic max). A request whose tenant has one reads from the reader only once the
reader has replayed that far; it waits READER_CATCH_UP_WAIT_SECONDS for it, then reads from the writer. One Redis
round trip per request answers both questions (the user's pin and the tenant's position).

A write is anything routed through db_for_write, and any statement other than a plain read that runs on the
writer's cursor (`.using(WRITER)`, raw SQL). psycopg's `cursor.copy()` bypasses Django's cursor wrapper:
code that COPYs and then reads in the same request or task calls pin_to_writer().

A reader that fails is marked down in this process only: every process pays for one failed connect per
READER_DOWN_SECONDS. Sharing the mark through Redis would put Redis on every read decision for little gain.
A reader whose connection pool is full (web processes, DATABASE_POOL) is busy, not down: after the pool's wait the
request is shed with a 503 and Retry-After (DatabaseBusy), and every other read still goes to the reader.
"""

import logging
import math
import re
import socket
import struct
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, connections
from psycopg_pool import PoolTimeout
from redis import RedisError

from mlops import metrics
from mlops.exceptions import DatabaseBusy
from mlops.redis_pool import redis_client

logger = logging.getLogger(__name__)

WRITER = "default"
READER = "reader"

# Outside a request or task (migrations, management commands, shells) everything goes to the writer;
# requests and tasks allow the reader when they start.
_pinned_to_writer: ContextVar[bool] = ContextVar("pinned_to_writer", default=True)
_wrote: ContextVar[bool] = ContextVar("wrote", default=False)
# The WAL position (bytes) the reader must have replayed before this context reads from it; None once it has.
_reader_must_reach: ContextVar[int | None] = ContextVar("reader_must_reach", default=None)

# Statements that only read; any other statement run on the writer pins the context.
_READ_ONLY_STATEMENT = re.compile(r"\s*(SELECT|SHOW|SET|SAVEPOINT|RELEASE|ROLLBACK)\b", re.IGNORECASE)

# PostgreSQL answers an SSLRequest with one byte ('S' or 'N') before any authentication.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)

# A task message published by a context pinned to the writer carries when, so the task can read what was written.
PINNED_AT_HEADER = "db_pinned_at"


@dataclass(frozen=True)
class ReaderOutage:
    since: float  # time.monotonic()
    error: str

    def seconds_left(self) -> float:
        return max(0.0, self.since + settings.READER_DOWN_SECONDS - time.monotonic())


# Replaced as a whole and left to expire, so threads read a consistent value without a lock.
_reader_outage: ReaderOutage | None = None


def pin_to_writer() -> None:
    _pinned_to_writer.set(True)


def is_pinned_to_writer() -> bool:
    return _pinned_to_writer.get()


def _note_write() -> None:
    _pinned_to_writer.set(True)
    _wrote.set(True)


def _pin_on_write_statement(execute, sql, params, many, context):
    # Composed SQL (psycopg.sql) cannot be read cheaply: count it as a write, the safe side.
    if not (isinstance(sql, str) and _READ_ONLY_STATEMENT.match(sql)):
        _note_write()
    return execute(sql, params, many, context)


def _watch_writer_for_writes() -> None:
    """Install the write detector on this thread's writer connection, once."""
    wrappers = connections[WRITER].execute_wrappers
    if _pin_on_write_statement not in wrappers:
        # First in the list: `with connection.execute_wrapper(...)` pops the last one when it exits.
        wrappers.insert(0, _pin_on_write_statement)


def allow_reader() -> None:
    """Start of a task: reads may go to the reader until something is written."""
    _watch_writer_for_writes()
    _pinned_to_writer.set(False)
    _wrote.set(False)
    _reader_must_reach.set(None)


@contextmanager
def reader_allowed():
    """A request: reads may go to the reader inside until something is written; the writer default returns after."""
    _watch_writer_for_writes()
    pinned = _pinned_to_writer.set(False)
    wrote = _wrote.set(False)
    must_reach = _reader_must_reach.set(None)
    try:
        yield
    finally:
        _reader_must_reach.reset(must_reach)
        _wrote.reset(wrote)
        _pinned_to_writer.reset(pinned)


def reader_outage() -> ReaderOutage | None:
    """The reader's current mark-down, or None; it never tries the reader."""
    outage = _reader_outage
    if outage is not None and outage.seconds_left() > 0:
        return outage
    return None


def first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def mark_reader_down(error: Exception) -> None:
    global _reader_outage
    _reader_outage = ReaderOutage(since=time.monotonic(), error=first_line(error))
    metrics.db_reader_fallbacks.inc()
    logger.warning(
        "database reader unreachable, reading from the writer for %ss",
        settings.READER_DOWN_SECONDS,
        extra={"error": _reader_outage.error},
    )


def database_busy(error: Exception) -> DatabaseBusy | None:
    """The DatabaseBusy to answer when `error` is a connection pool's timeout (every connection in use), else None."""
    timeout = error if isinstance(error, PoolTimeout) else error.__cause__
    return DatabaseBusy(first_line(timeout)) if isinstance(timeout, PoolTimeout) else None


def reader_available() -> bool:
    """Whether reads may go to the reader now: the router and /readyz ask this same question.

    A marked-down reader is not tried again for READER_DOWN_SECONDS. Otherwise a reused connection gets
    Django's health check (one `SELECT 1` per request or task, so a connection that outlived its replica is
    dropped, not used) and a missing one is opened; a failure marks the reader down instead of failing the read.
    A full pool raises DatabaseBusy instead: moving every tenant's reads to the writer because one burst took every
    reader connection would hand the burst to the writer too.
    """
    if reader_outage() is not None:
        return False
    reader = connections[READER]
    try:
        reader.close_if_health_check_failed()
        if reader.connection is None:
            _probe_server(reader.settings_dict)
            reader.ensure_connection()
    except (OperationalError, OSError) as error:
        if busy := database_busy(error):
            raise busy from error
        mark_reader_down(error)
        return False
    return True


def _probe_server(settings_dict: dict) -> None:
    """Raise OSError unless the server answers within its connect_timeout.

    libpq and psycopg raise any connect_timeout under 2 s to 2 s; this probe keeps the cost of finding a dead
    or hung reader at the configured connect_timeout (1 s) and costs one round trip per new connection.
    """
    host = settings_dict["HOST"]
    if not host or host.startswith("/") or "," in host:
        return  # a Unix socket fails at once; several hosts are libpq's to try in turn
    timeout = float(settings_dict["OPTIONS"].get("connect_timeout", 2))
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(settings_dict["PORT"] or 5432)), timeout=timeout) as probe:
        probe.settimeout(max(deadline - time.monotonic(), 0.001))
        probe.sendall(_SSL_REQUEST)
        answer = probe.recv(1)
    if answer not in (b"S", b"N"):
        raise OSError(f"{host}:{settings_dict['PORT']} does not answer like PostgreSQL (got {answer!r})")


# The highest replay position seen on the reader in this process: a replica's replay only moves forward, so a
# position it has reached needs no second look.
_reader_replayed = 0


def _reader_has_replayed(position: int) -> bool:
    """Whether the reader has replayed the writer's WAL up to `position`, waiting READER_CATCH_UP_WAIT_SECONDS."""
    global _reader_replayed
    if _reader_replayed >= position:
        return True
    deadline = time.monotonic() + settings.READER_CATCH_UP_WAIT_SECONDS
    while True:
        with connections[READER].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'")
            in_recovery, replayed = cursor.fetchone()
        if not in_recovery:
            return True  # the reader is a primary (a test mirror, or a promoted replica): it has everything
        if replayed is not None:
            _reader_replayed = max(_reader_replayed, int(replayed))
            if replayed >= position:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class ReadWriteRouter:
    def db_for_read(self, model, **hints):
        if _pinned_to_writer.get() or connections[WRITER].in_atomic_block:
            return metrics.read_routed(WRITER, "pinned")
        if not reader_available():
            return metrics.read_routed(WRITER, "reader_down")
        position = _reader_must_reach.get()
        if position is not None:
            if not _reader_has_replayed(position):
                # The rest of the context reads from the writer too, so it never goes back to an older state.
                pin_to_writer()
                return metrics.read_routed(WRITER, "reader_behind")
            _reader_must_reach.set(None)
        return metrics.read_routed(READER, "reader")

    def db_for_write(self, model, **hints):
        # Every later read in this request or task must see this write.
        _note_write()
        return WRITER

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases are the same data; objects read from either may be related.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == WRITER


def follow_tenant_on_reader(wrapper, tenant) -> None:
    """django-tenants hook: setting the tenant (or schema) on the writer sets it on the reader too."""
    if wrapper.alias == WRITER:
        connections[READER].set_tenant(tenant)


def stamp_task_headers(headers: dict) -> None:
    """before_task_publish: a task enqueued by a context pinned to the writer reads from the writer too."""
    if _pinned_to_writer.get():
        headers[PINNED_AT_HEADER] = time.time()


def pin_if_enqueued_after_write(request) -> None:
    """task_prerun, after allow_reader(): a task enqueued right after a write reads from the writer too."""
    pinned_at = (request.headers or {}).get(PINNED_AT_HEADER)
    if pinned_at is not None and time.time() - pinned_at < settings.READ_YOUR_WRITES_SECONDS:
        pin_to_writer()


def _sticky_key(tenant_schema: str, user_id: str) -> str:
    return f"mlops:db-pin:{tenant_schema}:{user_id}"


def _tenant_position_key(tenant_schema: str) -> str:
    return f"mlops:tenant-wal:{tenant_schema}"


# Keeps the larger position: two writers recording at once must never move it back.
_RECORD_MAX = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


def tenant_reads_see_writer(*, tenant_schema: str) -> None:
    """From now on, every request of the tenant reads what the writer has committed so far (its WAL position).

    Call it after the commit and before announcing the change (a job's websocket event), so the news never
    outruns what REST reads show. pg_current_wal_insert_lsn() is past every commit made so far, flushed or not.
    """
    with connections[WRITER].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn() - '0/0'")
        (position,) = cursor.fetchone()
    try:
        redis_client().eval(
            _RECORD_MAX,
            1,
            _tenant_position_key(tenant_schema),
            int(position),
            math.ceil(settings.TENANT_WRITER_POSITION_SECONDS * 1000),
        )
    except RedisError as error:
        # While Redis stays down requests read from the writer anyway (_route_request).
        logger.warning(
            "Redis unreachable, tenant's writer position not recorded",
            extra={"error": str(error), "tenant": tenant_schema},
        )


def _route_request(tenant_schema: str, user_id: str) -> None:
    """Pin the request to the writer if its user wrote recently, else make the reader catch up with the tenant."""
    try:
        pinned, position = redis_client().mget(_sticky_key(tenant_schema, user_id), _tenant_position_key(tenant_schema))
    except RedisError as error:
        # Unknown is answered with the writer: it is always right, the reader only usually.
        logger.warning("Redis unreachable, reading from the writer", extra={"error": str(error)})
        pin_to_writer()
        return
    if pinned:
        pin_to_writer()
    elif position:
        _reader_must_reach.set(int(position))


def _remember_write(key: str) -> None:
    try:
        redis_client().set(key, 1, px=math.ceil(settings.READ_YOUR_WRITES_SECONDS * 1000))
    except RedisError as error:
        # The write succeeded; while Redis stays down the next request reads from the writer anyway.
        logger.warning("Redis unreachable, read-your-writes pin not kept", extra={"error": str(error)})


class ReadYourWritesMiddleware:
    """Pins a user's requests to the writer for READ_YOUR_WRITES_SECONDS after any request that wrote, and keeps
    every request of a tenant from reading an older state than its jobs announced (tenant_reads_see_writer)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with reader_allowed():
            principal = getattr(request, "principal", None)
            if principal:
                _route_request(principal.tenant_schema, principal.user_id)
            response = self.get_response(request)
            if principal and _wrote.get():
                _remember_write(_sticky_key(principal.tenant_schema, principal.user_id))
            return response
