"""Aurora read/write routing: reads to the reader, writes and everything that must see them to the writer.

The pin lives in a context variable (safe under ASGI, one per request or task) and outlives the request
through a short-lived Redis key per tenant and user, so a POST followed by a GET reads its own write.
"""

import logging
import time
from contextvars import ContextVar

from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, connections

logger = logging.getLogger(__name__)

WRITER = "default"
READER = "reader"

# Outside a request or task (migrations, management commands, shells) everything goes to the writer;
# requests and tasks call allow_reader() when they start.
_pinned_to_writer: ContextVar[bool] = ContextVar("pinned_to_writer", default=True)
_wrote: ContextVar[bool] = ContextVar("wrote", default=False)
# Per process: when the reader last failed to connect (monotonic seconds); 0 means healthy.
_reader_down_since = 0.0


def pin_to_writer() -> None:
    _pinned_to_writer.set(True)


def allow_reader() -> None:
    """Start of a request or task: reads may go to the reader until something is written."""
    _pinned_to_writer.set(False)
    _wrote.set(False)


def is_pinned_to_writer() -> bool:
    return _pinned_to_writer.get()


def reader_marked_down() -> bool:
    return _reader_down_since and time.monotonic() - _reader_down_since < settings.READER_DOWN_SECONDS


def _mark_reader_down(error: Exception) -> None:
    global _reader_down_since
    _reader_down_since = time.monotonic()
    logger.warning("database reader unreachable, reading from the writer for %ss", settings.READER_DOWN_SECONDS,
                   extra={"error": str(error)})


def _reader_is_usable() -> bool:
    """Connect to the reader if needed; a failed connect marks it down instead of failing the read."""
    global _reader_down_since
    if reader_marked_down():
        return False
    reader = connections[READER]
    if reader.connection is not None:
        return True
    try:
        reader.ensure_connection()
    except OperationalError as error:
        _mark_reader_down(error)
        return False
    _reader_down_since = 0.0
    return True


class ReadWriteRouter:
    def db_for_read(self, model, **hints):
        if _pinned_to_writer.get() or connections[WRITER].in_atomic_block:
            return WRITER
        return READER if _reader_is_usable() else WRITER

    def db_for_write(self, model, **hints):
        # Every later read in this request or task must see this write.
        _pinned_to_writer.set(True)
        _wrote.set(True)
        return WRITER

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases are the same data; objects read from either may be related.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == WRITER


def follow_tenant_on_reader(wrapper, tenant) -> None:
    """django-tenants hook: setting the tenant on the writer sets it on the reader too."""
    if wrapper.alias == WRITER:
        connections[READER].set_tenant(tenant)


def _sticky_key(tenant_schema: str, user_id: str) -> str:
    return f"db-pin:{tenant_schema}:{user_id}"


class ReadYourWritesMiddleware:
    """Pins a user's requests to the writer for READ_YOUR_WRITES_SECONDS after any request that wrote."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        allow_reader()
        principal = getattr(request, "principal", None)
        key = _sticky_key(principal.tenant_schema, principal.user_id) if principal else None
        if key and cache.get(key):
            pin_to_writer()
        response = self.get_response(request)
        if key and _wrote.get():
            cache.set(key, 1, timeout=settings.READ_YOUR_WRITES_SECONDS)
        return response
