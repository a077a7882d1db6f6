"""One storage layer for imports, exports, error reports and artifacts.

Objects we write live under STORAGE_ROOT/<tenant schema>/..., so paths never cross tenants. Sources we
read may be local paths or `file://` URIs (only under LOCAL_READ_ROOTS), `s3://bucket/key` (boto3, with
the usual AWS environment), or `http(s)://` (through the outbound policy of mlops/outbound.py).
"""

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connections

from mlops import outbound
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError


class StorageError(ApplicationError):
    """A source this deployment may not read, or one that is not there: the caller's mistake, a 400."""


def tenant_path(*parts: str, create: bool = True) -> Path:
    """A path under the current tenant's storage folder, its folder created on demand; reads pass create=False
    (a GET never writes to disk)."""
    schema = connections[WRITER].schema_name
    if not schema or schema == "public":
        raise StorageError("No tenant is active; refusing to touch storage.")
    path = Path(settings.STORAGE_ROOT, schema, *parts)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


UPLOAD_SCHEME = "upload"


def save_upload(uploaded_file) -> str:
    """Stream an uploaded file into the tenant's storage; return the `upload://` URI that names it."""
    name = Path(uploaded_file.name).name or "upload"
    uri = f"{UPLOAD_SCHEME}://{uuid.uuid4().hex}/{name}"
    try:
        with open(tenant_path("uploads", uri.removeprefix(f"{UPLOAD_SCHEME}://")), "wb") as out:
            for chunk in uploaded_file.chunks():
                out.write(chunk)
    except BaseException:
        delete_upload(uri)
        raise
    return uri


def upload_folder(uri: str) -> Path | None:
    """The folder save_upload made for `uri` in the current tenant's uploads (None if `uri` names no such folder):
    `shutil.rmtree` it to delete the upload, at once or later, whichever tenant is active then."""
    root = tenant_path("uploads", "x").parent.resolve()
    folder = (root / uri.removeprefix(f"{UPLOAD_SCHEME}://")).resolve().parent
    return folder if folder.parent == root else None


def delete_upload(uri: str) -> None:
    """Remove an upload of the current tenant with its folder; one already gone is no error."""
    folder = upload_folder(uri)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def _upload_path(uri: str) -> Path:
    """An `upload://` URI resolves inside the current tenant's uploads folder, and nowhere else."""
    root = tenant_path("uploads", "x").parent.resolve()
    path = (root / uri.removeprefix(f"{UPLOAD_SCHEME}://")).resolve()
    if root not in path.parents or not path.is_file():
        raise StorageError(f"'{uri}' is not an upload of this tenant.", {"fields": {"uri": ["No such upload."]}})
    return path


def _inside_read_roots(uri: str) -> Path:
    raw = unquote(urlsplit(uri).path) if uri.startswith("file://") else uri
    path = Path(raw).resolve()
    roots = [Path(root).resolve() for root in settings.LOCAL_READ_ROOTS]
    if not any(path == root or root in path.parents for root in roots):
        raise StorageError(f"'{uri}' is outside the folders this deployment may read.",
                           {"fields": {"uri": ["Local paths must be under one of the configured read roots."]}})
    return path


def _local_path(uri: str) -> Path:
    path = _inside_read_roots(uri)
    if not path.is_file():
        raise StorageError(f"'{uri}' does not exist or is not a file.", {"fields": {"uri": ["No such file."]}})
    return path


def is_local_uri(uri: str) -> bool:
    return urlsplit(uri).scheme in ("", "file")


def readable_local_path(uri: str) -> Path:
    """The file behind a local path or file:// URI, only if it is under LOCAL_READ_ROOTS (StorageError otherwise)."""
    return _local_path(uri)


def readable_local_folder(uri: str) -> Path:
    """The folder behind a local path or file:// URI, only if it is under LOCAL_READ_ROOTS (StorageError otherwise)."""
    path = _inside_read_roots(uri)
    if not path.is_dir():
        raise StorageError(f"'{uri}' does not exist or is not a folder.", {"fields": {"uri": ["No such folder."]}})
    return path


def s3_object_uris(folder_uri: str) -> Iterator[str]:
    """`s3://bucket/key` of every object whose key starts with the URI's prefix, listed page by page."""
    parts = urlsplit(folder_uri)
    pages = _s3_client().get_paginator("list_objects_v2").paginate(Bucket=parts.netloc, Prefix=parts.path.lstrip("/"))
    for page in pages:
        for item in page.get("Contents", []):
            yield f"s3://{parts.netloc}/{item['Key']}"


def s3_object_heads(object_uris: list[str], size: int, *, concurrency: int = 10) -> list[bytes]:
    """The first `size` bytes of each s3:// object (ranged GETs, in parallel on one client), in order.
    10 at once: botocore's connection pool per client, so more threads would only queue for a connection."""
    from botocore.exceptions import ClientError  # lazily, like boto3

    client = _s3_client()

    def head(uri: str) -> bytes:
        parts = urlsplit(uri)
        try:
            response = client.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"), Range=f"bytes=0-{size - 1}")
        except ClientError as error:
            if error.response["Error"]["Code"] == "InvalidRange":  # an empty object has no first byte
                return b""
            raise
        return response["Body"].read()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(head, object_uris))


def presigned_url(uri: str, *, expires_seconds: int) -> str:
    """A time-limited GET URL for an s3:// object, signed locally with the usual AWS credentials (no request)."""
    parts = urlsplit(uri)
    return _s3_client().generate_presigned_url(
        "get_object", Params={"Bucket": parts.netloc, "Key": parts.path.lstrip("/")}, ExpiresIn=expires_seconds)


def _s3_client():
    import boto3  # imported lazily: it is slow to import and most processes never touch S3

    return boto3.client("s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL)


@contextmanager
def open_uri(uri: str) -> Iterator[BinaryIO]:
    """A binary stream over the object at `uri`, read as it is consumed (constant memory)."""
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file", UPLOAD_SCHEME):
        with open(_upload_path(uri) if scheme == UPLOAD_SCHEME else _local_path(uri), "rb") as stream:
            yield stream
    elif scheme == "s3":
        parts = urlsplit(uri)
        body = _s3_client().get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
        try:
            yield body
        finally:
            body.close()
    elif scheme in outbound.SCHEMES:
        with outbound.fetch(uri) as chunks:
            yield _IteratorStream(chunks)
    else:
        raise StorageError(f"Unsupported URI scheme '{scheme}'.", {"fields": {"uri": ["Use a path, file://, s3:// or http(s)://."]}})


@contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A seekable local file for `uri`: the file itself when local, else a temporary download."""
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file", UPLOAD_SCHEME):
        yield _upload_path(uri) if scheme == UPLOAD_SCHEME else _local_path(uri)
        return
    with tempfile.NamedTemporaryFile(dir=settings.STORAGE_ROOT, suffix=".download") as temp, open_uri(uri) as source:
        shutil.copyfileobj(source, temp, length=1024 * 1024)
        temp.flush()
        yield Path(temp.name)


class _IteratorStream:
    """Just enough of a binary file over an iterator of chunks for readline()/read()."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buffer = b""

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                return
            self._buffer += chunk

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            self._buffer += b"".join(self._chunks)
            size = len(self._buffer)
        self._fill(size)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, limit: int = -1) -> bytes:
        while b"\n" not in self._buffer and (limit < 0 or len(self._buffer) < limit):
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if limit >= 0:
            end = min(end, limit)
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line
