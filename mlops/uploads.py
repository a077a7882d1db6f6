"""The upload size limit (UPLOAD_MAX_BYTES), enforced where the bytes arrive.

Under ASGI, Django spools a whole request body to a temporary file before any view runs, so the limit is
first an ASGI middleware: a Content-Length past it is answered 413 before the body is read, and a body
without one is cut off (and answered 413) once it passes the limit. The upload handler holds each
multipart file to the same limit wherever Django parses one (WSGI, the test client).
"""

import orjson
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from mlops.exceptions import PayloadTooLarge, error_body


def upload_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {limit} bytes (UPLOAD_MAX_BYTES).",
        {"limit_bytes": limit, "setting": "UPLOAD_MAX_BYTES"},
    )


class UploadLimitHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: it raises before the handlers after it store a byte past the limit."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length > settings.UPLOAD_MAX_BYTES:
            raise upload_too_large(settings.UPLOAD_MAX_BYTES)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.UPLOAD_MAX_BYTES:
            raise upload_too_large(settings.UPLOAD_MAX_BYTES)
        return raw_data

    def file_complete(self, file_size):
        return None


def body_size_limited(app):
    """ASGI middleware: no HTTP request body larger than UPLOAD_MAX_BYTES reaches `app`."""

    async def limited(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        limit = settings.UPLOAD_MAX_BYTES
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _answer_too_large(send, limit)
        received, cut_off = 0, False

        async def counted_receive():
            nonlocal received, cut_off
            if cut_off:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django drops a request whose client went away, with the body it had spooled so far.
                    cut_off = True
                    return {"type": "http.disconnect"}
            return message

        await app(scope, counted_receive, send)
        if cut_off:
            await _answer_too_large(send, limit)

    return limited


async def _answer_too_large(send, limit: int) -> None:
    error = upload_too_large(limit)
    body = orjson.dumps(error_body(error.message, error.extra))
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
