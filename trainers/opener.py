"""Open a datarow URI as a binary stream without Django: what plain scripts pass as a trainer's opener.

Inside the platform the caller passes `mlops.storage.open_uri` instead, which also confines local reads
to the tenant's folder, s3:// reads to the tenant's prefixes, and knows tenant uploads.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import unquote, urlsplit
from urllib.request import urlopen

HTTP_TIMEOUT_SECONDS = 30


@contextmanager
def open_uri(uri: str) -> Iterator[BinaryIO]:
    """A local path, file://, http(s):// (urllib; non-2xx raises HTTPError) or s3://bucket/key (boto3, which
    reads the usual AWS_* environment, AWS_ENDPOINT_URL included)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        with urlopen(uri, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 (the scheme is http(s): checked above)
            yield response
    elif parts.scheme == "s3":
        import boto3  # lazily: slow to import, and only S3 datasets need it

        body = boto3.client("s3").get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"]
        try:
            yield body
        finally:
            body.close()
    elif parts.scheme == "file":
        with open(unquote(parts.path), "rb") as stream:
            yield stream
    elif parts.scheme == "" or len(parts.scheme) == 1:  # a plain path (one letter: a Windows drive)
        with open(uri, "rb") as stream:
            yield stream
    else:
        raise ValueError(
            f"Unsupported URI scheme '{parts.scheme}' in '{uri}': use a path, file://, http(s):// or s3://."
        )
