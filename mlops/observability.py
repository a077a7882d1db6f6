"""Request ids and log context: every log line carries request id, tenant, user and job where known."""

import logging
import re
import time
import uuid
from contextvars import ContextVar

import sentry_sdk
from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is a plain token: it goes into every log line and back into a header.
CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Credentials a URL or a header may carry: a websocket's `?token=<JWT>` (browsers cannot set its headers), OAuth's
# access_token and friends, S3 presigned URLs' X-Amz-Signature/Credential/Security-Token, bearer headers, and any JWT.
SECRET_QUERY_PARAMETER = re.compile(
    r"(?i)(?<![\w.-])((?:[\w.-]*(?:token|secret|password|passwd|signature|credential)|authorization|api[_-]?key)=)"
    r"[^&\s'\"\\#]+"
)
BEARER_CREDENTIAL = re.compile(r"(?i)\b(bearer\s+)[\w.~+/=-]+")
JSON_WEB_TOKEN = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")
REDACTED = "[redacted]"
# Headers Sentry may report whose whole value is a credential.
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}

log_context: ContextVar[dict] = ContextVar("log_context", default={})
request_logger = logging.getLogger("mlops.request")


def bind_log_context(**values) -> None:
    log_context.set({**log_context.get(), **{k: v for k, v in values.items() if v is not None}})


def clear_log_context() -> None:
    log_context.set({})


def redact_secrets(text: str) -> str:
    text = SECRET_QUERY_PARAMETER.sub(rf"\1{REDACTED}", text)
    text = BEARER_CREDENTIAL.sub(rf"\1{REDACTED}", text)
    return JSON_WEB_TOKEN.sub(REDACTED, text)


def _scrub(value):
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower().replace("_", "-") in SECRET_HEADERS else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def sentry_before_send(event: dict, hint: dict) -> dict:
    """Sentry's `send_default_pii=False` drops the Authorization header but not the query string (`?token=`), nor
    a token in a message, a breadcrumb or a frame's local variables (an ASGI scope): every string is redacted."""
    return _scrub(event)


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines with credentials redacted from the whole line: message, extras (django.request's `request` shows
    the query string) and tracebacks alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(super().format(record))


class LogContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in log_context.get().items():
            setattr(record, key, value)
        return True


def json_log_formatter() -> JsonFormatter:
    """The formatter settings.LOGGING configures, for the loggers that Django does not configure (gunicorn's)."""
    return RedactingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's own lines, and uvicorn's that UvicornWorker sends through gunicorn's handlers, as JSON too."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(json_log_formatter())


class RequestContextMiddleware:
    """Gives each request an id (or keeps the caller's X-Request-ID), echoes it, and logs one line per request.

    The context is cleared when a request starts rather than reset when it ends, so that Django's own
    "Internal Server Error" and "Not Found" lines, written after the middleware returns, still carry it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        clear_log_context()
        caller_request_id = request.headers.get(REQUEST_ID_HEADER, "")
        request.request_id = caller_request_id if CALLER_REQUEST_ID.fullmatch(caller_request_id) else uuid.uuid4().hex
        bind_log_context(request_id=request.request_id)
        sentry_sdk.set_tag("request_id", request.request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        # The access log: gunicorn's is off because it cannot know the tenant and user bound further in.
        request_logger.info(
            "request finished",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response
