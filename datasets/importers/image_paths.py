"""Where the images an annotation file names are: a relative path resolves against an images root.

The root is the import's `images_uri` (a local folder in the tenant's folder, an s3:// prefix under its
TENANT_S3_PREFIXES, or an http(s) prefix the outbound policy allows), else the annotation file's own folder
(local or s3; an uploaded or http(s) file has none). A name never leaves its root: `..` segments are refused,
so are absolute paths and URIs when images_uri is given, and local links out of the tenant's folder. The
datarow keeps the resolved URI (an absolute path or a full s3:// or http(s) URI), which the image endpoint
and the trainers read as it is. `check_images` looks each image up: a stat per local file, a HEAD per s3
object (ten at once, chunk by chunk); an http(s) root is not looked up.
"""

import os
from pathlib import Path
from urllib.parse import quote, urlsplit

from datasets.importers.image_folder import LINK_OUT
from datasets.importers.records import BadRecord
from mlops import outbound
from mlops.storage import (
    UPLOAD_SCHEME,
    StorageError,
    outside_tenant_folder,
    readable_local_folder,
    s3_location,
    s3_objects_exist,
    source_check,
)

NO_ROOT_UPLOAD = "an uploaded annotation file has no folder of its own: give images_uri"
NO_ROOT_HTTP = "an annotation file read over http(s) has no folder to take images from: give images_uri"


class ImageRoot:
    """Resolves the image names of one import. Built in the import's tenant, like every storage check."""

    def __init__(self, kind: str | None, base: str | None, *, explicit: bool, check: bool, no_root: str = ""):
        self.kind, self.base, self.explicit, self.check, self.no_root = kind, base, explicit, check, no_root

    @property
    def looks_up_objects(self) -> bool:
        """Whether resolved names still need s3_objects_exist (a local image is looked up as it resolves)."""
        return self.check and self.kind == "s3"

    def resolve(self, name: str, field: str) -> str:
        """The URI of the image `name` (BadRecord at `field` when it leaves the root, or cannot be resolved)."""
        if urlsplit(name).scheme or name.startswith("/"):
            if self.explicit:
                raise BadRecord(field, "is an absolute path or URI; with images_uri, names are relative to it")
            return name  # kept as written: local paths are held to the tenant's folder like any datarow URI
        segments = [segment for segment in name.split("/") if segment not in ("", ".")]
        if ".." in segments:
            raise BadRecord(field, "leaves the images folder ('..' is not allowed in an image path)")
        if not segments:
            raise BadRecord(field, "names no file")
        if self.kind is None:
            raise BadRecord(
                field, f"is a relative path and there is no images folder to resolve it against: {self.no_root}"
            )
        relative = "/".join(segments)
        if self.kind == "local":
            path = os.path.join(self.base, relative)
            if outside_tenant_folder(Path(path)):
                raise BadRecord(field, LINK_OUT)
            if self.check and not os.path.isfile(path):
                raise BadRecord(field, f"is missing: no file '{relative}' in the images folder")
            return path
        if self.kind == "s3":
            if "?" in relative or "#" in relative:
                raise BadRecord(field, "has '?' or '#', which an s3:// URI cannot carry in its key")
            uri = f"{self.base}/{relative}"
            try:
                s3_location(uri)
            except StorageError:
                raise BadRecord(field, f"resolves to '{uri}', outside this tenant's S3 prefixes") from None
            return uri
        return f"{self.base}/{quote(relative, safe='/')}"

    def missing_objects(self, uris: list[str]) -> list[bool]:
        """For looks_up_objects: whether each resolved s3 URI has no object."""
        return [not found for found in s3_objects_exist(uris)]


def _root_of(images_uri: str) -> tuple[str, str]:
    """The kind and base of an images_uri; StorageError when this tenant may not read it."""
    scheme = urlsplit(images_uri).scheme
    if scheme in ("", "file"):
        return "local", str(readable_local_folder(images_uri))
    if scheme == "s3":
        s3_location(images_uri)
        return "s3", images_uri.rstrip("/")
    if scheme in outbound.SCHEMES:
        outbound.uri_check(images_uri)
        return "http", images_uri.rstrip("/")
    raise StorageError(f"'{images_uri}' cannot hold images: give a local folder, an s3:// or an http(s):// prefix.")


def images_uri_check(images_uri: str) -> None:
    """Refuse now (a 400 at images_uri) a root this tenant may never read; whether a local folder exists is the
    job's to find out, as for the source."""
    if urlsplit(images_uri).scheme == UPLOAD_SCHEME:
        raise StorageError("images_uri cannot be an upload.", {"fields": {"images_uri": ["Give a folder or prefix."]}})
    try:
        source_check(images_uri)
    except StorageError as error:
        raise StorageError(
            error.message, {"fields": {"images_uri": error.extra.get("fields", {}).get("uri", [error.message])}}
        ) from None


def image_root(source_uri: str, source_path: Path, *, images_uri: str | None, check: bool) -> ImageRoot:
    """The root of an import from `source_uri` (read at `source_path`); StorageError for an unusable images_uri."""
    if images_uri:
        kind, base = _root_of(images_uri)
        return ImageRoot(kind, base, explicit=True, check=check)
    scheme = urlsplit(source_uri).scheme
    if scheme in ("", "file"):
        return ImageRoot("local", str(source_path.parent), explicit=False, check=check)
    if scheme == "s3":
        return ImageRoot("s3", source_uri.rsplit("/", 1)[0], explicit=False, check=check)
    no_root = NO_ROOT_UPLOAD if scheme == UPLOAD_SCHEME else NO_ROOT_HTTP
    return ImageRoot(None, None, explicit=False, check=check, no_root=no_root)
