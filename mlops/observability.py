"""Request ids and log context: every log line carries request id, tenant, user and job where known."""

import logging
import uuid
from contextvars import ContextVar

import sentry_sdk

log_context: ContextVar[dict] = ContextVar("log_context", default={})


def bind_log_context(**values) -> None:
    log_context.set({**log_context.get(), **{k: v for k, v in values.items() if v is not None}})


def clear_log_context() -> None:
    log_context.set({})


class LogContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in log_context.get().items():
            setattr(record, key, value)
        return True


class RequestContextMiddleware:
    """Gives each request an id (or keeps the caller's X-Request-ID) and echoes it in the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        clear_log_context()
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        request.request_id = request_id[:64]
        bind_log_context(request_id=request.request_id)
        sentry_sdk.set_tag("request_id", request.request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
