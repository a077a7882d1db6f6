"""Image folders (`images`): one datarow per image file of a local folder or an `s3://bucket/prefix`.

A local folder lies in the tenant's folder, and a link in it that leads out of that folder is a bad line.

external_id is the file's path relative to the folder (or its key relative to the prefix), uri the file's
path (or `s3://` URI). Width and height come from the image header only: imagesize reads just the bytes
it needs of a local file, and an S3 object is read by a ranged GET of its first HEADER_BYTES. No labels:
a re-import refreshes the rows and leaves their labels alone. Errors: line = the image's position in the
listing, field = its path relative to the folder.
"""

import io
import os
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from urllib.parse import urlsplit

import imagesize

from datasets.importers.records import LineError, record_from_dict
from mlops.storage import (
    outside_tenant_folder,
    readable_local_folder,
    s3_object_heads,
    s3_object_uris,
    s3_readable,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
# Where JPEG, PNG, WebP, BMP and GIF keep their size; a JPEG whose EXIF runs past it is reported, not guessed.
HEADER_BYTES = 64 * 1024
UNREADABLE_IMAGE = "is not an image whose width and height can be read from its header"
LINK_OUT = "is a link out of this tenant's folder"
UNREADABLE_HEAD = f"has no width and height that can be read from its first {HEADER_BYTES // 1024} KiB"
# Objects whose heads are fetched together (in parallel): S3 latency, not bandwidth, bounds small reads.
S3_HEADS_PER_CALL = 100


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def files_under(folder: Path, wanted: Callable[[str], bool]) -> Iterator[Path]:
    """Every wanted file under `folder`, in directory order: scandir streams, so a folder of millions stays flat."""
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file() and wanted(entry.name):
                    yield Path(entry.path)


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """Width and height as displayed (EXIF rotation applied, as browsers and YOLO tools do), or None."""
    width, height = imagesize.get(io.BytesIO(source) if isinstance(source, bytes) else source)
    return (width, height) if width > 0 and height > 0 else None


def _record(line_no: int, external_id: str, uri: str, size: tuple[int, int] | None, unreadable: str):
    if size is None:
        return LineError(line_no, external_id, unreadable)
    return record_from_dict(line_no, {"external_id": external_id, "uri": uri, "width": size[0], "height": size[1]})


def _local_records(uri: str) -> Iterator[tuple[int, object]]:
    folder = readable_local_folder(uri)
    for line_no, path in enumerate(files_under(folder, is_image), start=1):
        external_id = path.relative_to(folder).as_posix()
        if path.is_symlink() and outside_tenant_folder(path):
            yield line_no, LineError(line_no, external_id, LINK_OUT)
            continue
        yield line_no, _record(line_no, external_id, str(path), image_size(path), UNREADABLE_IMAGE)


def _s3_records(uri: str) -> Iterator[tuple[int, object]]:
    # A prefix names a folder: s3://b/photos lists photos/..., not photos2/...
    folder_uri = uri if uri.endswith("/") else uri + "/"
    images = (object_uri for object_uri in s3_object_uris(folder_uri) if is_image(object_uri))
    line_no = 0
    while chunk := list(islice(images, S3_HEADS_PER_CALL)):
        # Listed under an allowed prefix, a key may still have `.` or `..` segments, which are never read.
        readable = [object_uri for object_uri in chunk if s3_readable(object_uri)]
        heads = dict(zip(readable, s3_object_heads(readable, HEADER_BYTES), strict=True))
        for object_uri in chunk:
            line_no += 1
            external_id = object_uri.removeprefix(folder_uri)
            if object_uri not in heads:
                yield line_no, LineError(line_no, external_id, "has '.' or '..' segments, which are not read")
                continue
            yield line_no, _record(line_no, external_id, object_uri, image_size(heads[object_uri]), UNREADABLE_HEAD)


def image_folder_records(uri: str) -> Iterator[tuple[int, object]]:
    return _s3_records(uri) if urlsplit(uri).scheme == "s3" else _local_records(uri)
