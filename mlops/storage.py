"""One storage layer for imports, exports, error reports and artifacts.

Objects we write live under STORAGE_ROOT/<tenant schema>/..., so paths never cross tenants. Sources we
read may be local paths or `file://` URIs (only inside the tenant's folder LOCAL_READ_ROOT/<schema>/, symlinks
resolved; a relative path is taken from that folder), `s3://bucket/key` (boto3, with the usual AWS environment;
only under the tenant's TENANT_S3_PREFIXES), or `http(s)://` (through the outbound policy of mlops/outbound.py).
"""

import os
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
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from mlops import outbound
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError


class StorageError(ApplicationError):
    """A source this deployment may not read, or one that is not there: the caller's mistake, a 400."""


def _tenant_schema() -> str:
    schema = connections[WRITER].schema_name
    if not schema or schema == "public":
        raise StorageError("No tenant is active; refusing to touch storage.")
    return schema


def tenant_path(*parts: str, create: bool = True) -> Path:
    """A path under the current tenant's storage folder, its folder created on demand; reads pass create=False
    (a GET never writes to disk)."""
    path = Path(settings.STORAGE_ROOT, _tenant_schema(), *parts)
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


def tenant_read_folder(schema_name: str | None = None) -> Path:
    """LOCAL_READ_ROOT/<schema>: the one local folder a tenant's imports and images are read from (the current
    tenant's unless named)."""
    return Path(settings.LOCAL_READ_ROOT, schema_name or _tenant_schema())


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _local_raw_path(uri: str) -> str:
    parts = urlsplit(uri)
    return unquote(parts.path) if parts.scheme == "file" else uri


def _inside_tenant_folder(uri: str) -> Path:
    """The real path (symlinks resolved) behind a local URI, if it lies in the tenant's folder; a relative path is
    taken from that folder. Resolving first means a link inside the folder cannot lead out of it."""
    folder = tenant_read_folder()
    real_folder = os.path.realpath(folder)
    try:
        path = os.path.realpath(folder / _local_raw_path(uri))  # an absolute path replaces the folder in the join
    except ValueError:  # a NUL byte
        path = ""
    if not _within(path, real_folder):
        raise StorageError(
            f"'{uri}' is outside this tenant's folder of local files.",
            {
                "fields": {
                    "uri": [
                        "Local paths must be inside this tenant's folder (relative paths are "
                        "taken from it); links out of it are refused."
                    ]
                }
            },
        )
    return Path(path)


def outside_tenant_folder(path: Path) -> bool:
    """Whether a file found in a folder being imported really lies elsewhere: a link, or a path through one."""
    try:
        _inside_tenant_folder(str(path))
    except StorageError:
        return True
    return False


class LocalUriCheck:
    """Whether a datarow's local URI stays in the tenant's folder, judged on the text alone: it runs on every
    manifest line, so it makes no file system call. Reads resolve symlinks again (_inside_tenant_folder)."""

    def __init__(self):
        folder = tenant_read_folder()
        self._folder = os.path.abspath(folder)
        self._folders = {self._folder, os.path.realpath(folder)}

    def outside(self, uri: str) -> bool:
        if not is_local_uri(uri):
            return False
        path = os.path.normpath(os.path.join(self._folder, _local_raw_path(uri)))
        return not any(_within(path, folder) for folder in self._folders)


def _local_path(uri: str) -> Path:
    path = _inside_tenant_folder(uri)
    if not path.is_file():
        raise StorageError(f"'{uri}' does not exist or is not a file.", {"fields": {"uri": ["No such file."]}})
    return path


def is_local_uri(uri: str) -> bool:
    return urlsplit(uri).scheme in ("", "file")


def readable_local_path(uri: str) -> Path:
    """The real file behind a local path or file:// URI, only if it is in the tenant's folder (StorageError
    otherwise)."""
    return _local_path(uri)


def readable_local_folder(uri: str) -> Path:
    """The real folder behind a local path or file:// URI, only if it is in the tenant's folder (StorageError
    otherwise)."""
    path = _inside_tenant_folder(uri)
    if not path.is_dir():
        raise StorageError(f"'{uri}' does not exist or is not a folder.", {"fields": {"uri": ["No such folder."]}})
    return path


def source_check(uri: str) -> None:
    """Refuse now (a 400) a source this tenant may never read: a local path outside its folder, an s3:// object
    outside its prefixes, an http(s) host the outbound policy refuses. Whether it exists is the job's to find out."""
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        _inside_tenant_folder(uri)
    elif scheme == UPLOAD_SCHEME:
        _upload_path(uri)
    elif scheme == "s3":
        s3_location(uri)
    elif scheme in outbound.SCHEMES:
        outbound.uri_check(uri)
    else:
        raise StorageError(
            f"Unsupported URI scheme '{scheme}'.", {"fields": {"uri": ["Use a path, file://, s3:// or http(s)://."]}}
        )


def _s3_prefixes(schema: str) -> list[tuple[str, str]]:
    """The tenant's (bucket, key prefix) pairs from TENANT_S3_PREFIXES, the prefix without its trailing '/'."""
    prefixes = []
    for configured in settings.TENANT_S3_PREFIXES.get(schema, ()):
        parts = urlsplit(configured)
        key = "/".join(segment for segment in parts.path.split("/") if segment)
        if not parts.netloc or any(segment in (".", "..") for segment in key.split("/")):
            raise ImproperlyConfigured(f"TENANT_S3_PREFIXES[{schema!r}]: {configured!r} is not s3://bucket/prefix/")
        prefixes.append((parts.netloc, key))
    return prefixes


def s3_location(uri: str) -> tuple[str, str]:
    """Bucket and key of an s3:// URI, if they lie under one of the tenant's prefixes (whole path segments: a
    prefix `a` holds `a` and `a/...`, never `ab`); a key with `.` or `..` segments is refused outright, so no
    normalising client or proxy can move it out of the prefix that was checked."""
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    allowed = (
        parts.scheme == "s3"
        and bucket
        and not any(segment in (".", "..") for segment in key.split("/"))
        and any(
            bucket == allowed_bucket and (not prefix or key == prefix or key.startswith(prefix + "/"))
            for allowed_bucket, prefix in _s3_prefixes(_tenant_schema())
        )
    )
    if not allowed:
        raise StorageError(
            f"'{uri}' is not in an S3 bucket or prefix this tenant may read.",
            {"fields": {"uri": ["Only the S3 prefixes configured for this tenant can be read."]}},
        )
    return bucket, key


def s3_readable(uri: str) -> bool:
    try:
        s3_location(uri)
    except StorageError:
        return False
    return True


def s3_object_uris(folder_uri: str) -> Iterator[str]:
    """`s3://bucket/key` of every object whose key starts with the URI's prefix, listed page by page."""
    bucket, prefix = s3_location(folder_uri)
    pages = _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            yield f"s3://{bucket}/{item['Key']}"


def s3_object_heads(object_uris: list[str], size: int, *, concurrency: int = 10) -> list[bytes]:
    """The first `size` bytes of each s3:// object (ranged GETs, in parallel on one client), in order.
    10 at once: botocore's connection pool per client, so more threads would only queue for a connection."""
    from botocore.exceptions import ClientError  # lazily, like boto3

    client = _s3_client()
    locations = [s3_location(uri) for uri in object_uris]  # here: the tenant is this thread's connection's

    def head(location: tuple[str, str]) -> bytes:
        bucket, key = location
        try:
            response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{size - 1}")
        except ClientError as error:
            if error.response["Error"]["Code"] == "InvalidRange":  # an empty object has no first byte
                return b""
            raise
        return response["Body"].read()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(head, locations))


def s3_objects_exist(object_uris: list[str], *, concurrency: int = 10) -> list[bool]:
    """Whether each s3:// object is there: one HEAD each, `concurrency` at once on one client, in order."""
    from botocore.exceptions import ClientError  # lazily, like boto3

    client = _s3_client()
    locations = [s3_location(uri) for uri in object_uris]  # here: the tenant is this thread's connection's

    def exists(location: tuple[str, str]) -> bool:
        bucket, key = location
        try:
            client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(exists, locations))


def presigned_url(uri: str, *, expires_seconds: int) -> str:
    """A time-limited GET URL for an s3:// object under the tenant's prefixes, signed locally with the usual AWS
    credentials (no request); StorageError for any other object, or when there is nothing to sign with."""
    from botocore.exceptions import BotoCoreError, ClientError  # lazily, like boto3

    bucket, key = s3_location(uri)
    try:
        return _s3_client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_seconds
        )
    # No credentials, no region, a malformed AWS_S3_ENDPOINT_URL (boto3's ValueError): the row is shown without a URL.
    except (BotoCoreError, ClientError, ValueError) as error:
        raise StorageError(f"'{uri}' cannot be signed: {error}") from error


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
        bucket, key = s3_location(uri)
        body = _s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield body
        finally:
            body.close()
    elif scheme in outbound.SCHEMES:
        with outbound.fetch(uri) as chunks:
            yield _IteratorStream(chunks)
    else:
        raise StorageError(
            f"Unsupported URI scheme '{scheme}'.", {"fields": {"uri": ["Use a path, file://, s3:// or http(s)://."]}}
        )


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
