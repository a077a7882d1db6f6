"""YOLO detection folders (`yolo`): images/ and labels/ side by side, classes from data.yaml or classes.txt.

The URI is a local folder (in the tenant's folder; links out of it are refused) with images/**/<name>.<jpg|png|...> and, at the same
relative path, labels/**/<name>.txt: one `class cx cy w h` line per object, normalised to [0, 1]. Class
indexes name the classes of data.yaml `names` (a list, or {index: name}), else of classes.txt (one per
line, in the folder or in labels/ as labelImg writes it). Each image becomes a datarow: external_id = its
path under images/, uri = its file, width/height from its header; its labels are the label file's boxes
in pixels, clipped to the image as YOLO tools do. An image without a label file has no objects, so a
re-import clears its labels. The import's images_uri (a local folder of the tenant's) may hold the images
instead of images/; the datarow's URI is always the image's absolute path, which the image endpoint serves.

Errors: line = the image's position in the walk, field = the file and its line (`labels/train/a.txt:3`);
an image with a bad label line is left out whole. A label file without an image and a missing class list
are reported on line 0.
"""

from collections.abc import Iterator
from pathlib import Path

import yaml
from django.conf import settings

from datasets.importers.image_folder import (
    IMAGE_SUFFIXES,
    LINK_OUT,
    UNREADABLE_IMAGE,
    files_under,
    image_size,
    is_image,
)
from datasets.importers.records import LineError, record_from_dict
from datasets.importers.sources import too_long_message
from mlops.storage import StorageError, is_local_uri, outside_tenant_folder, readable_local_folder

CLASS_FILES = ("data.yaml", "classes.txt", "labels/classes.txt")
# Where a label file's image may be: every image suffix, as written by tools that lower- or upper-case it.
IMAGE_SUFFIX_SPELLINGS = tuple(sorted(IMAGE_SUFFIXES | {suffix.upper() for suffix in IMAGE_SUFFIXES}))


class _BadLabel(Exception):
    """A label line that cannot be read; its message becomes the line's error."""


def _class_names(root: Path) -> tuple[dict[int, str], Path] | LineError:
    """Class index -> name, and the file that named them."""
    for name in CLASS_FILES:
        path = root / name
        if not path.is_file():
            continue
        if outside_tenant_folder(path):
            return LineError(0, name, LINK_OUT)
        if path.stat().st_size > settings.IMPORT_MAX_LINE_BYTES:
            return LineError(0, name, too_long_message(settings.IMPORT_MAX_LINE_BYTES))
        try:
            text = path.read_text(encoding="utf-8")
            if name == "data.yaml":
                names = (yaml.safe_load(text) or {}).get("names")
            else:
                names = [line.strip() for line in text.splitlines() if line.strip()]
        # PyYAML builds nested collections recursively: a deeply nested file ends in RecursionError.
        except (UnicodeDecodeError, yaml.YAMLError, AttributeError, RecursionError):
            return LineError(0, name, "is not a readable class list")
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not (
            isinstance(names, dict)
            and names
            and all(isinstance(i, int) and isinstance(n, str) and n.strip() for i, n in names.items())
        ):
            return LineError(
                0, name, "must name at least one class: `names` as a list or {index: name}, or one per line"
            )
        return names, path
    return LineError(
        0, "data.yaml", "is missing, and so is classes.txt: a YOLO folder names its classes in one of them"
    )


def _label(line: str, classes: dict[int, str], width: int, height: int) -> dict:
    values = line.split()
    if len(values) != 5:
        raise _BadLabel(f"has {len(values)} values; a YOLO line is `class cx cy w h`")
    try:
        index = int(values[0])
    except ValueError:
        raise _BadLabel(f"class '{values[0]}' is not a whole number") from None
    if index not in classes:
        raise _BadLabel(f"class {index} is not one of the {len(classes)} classes")
    try:
        cx, cy, w, h = (float(value) for value in values[1:])
    except ValueError:
        raise _BadLabel("cx cy w h must be numbers") from None
    if not all(0 <= value <= 1 for value in (cx, cy, w, h)) or w == 0 or h == 0:
        raise _BadLabel("cx cy w h must be within [0, 1], with w and h above 0")
    left, top = max(cx - w / 2, 0) * width, max(cy - h / 2, 0) * height
    right, bottom = min(cx + w / 2, 1) * width, min(cy + h / 2, 1) * height
    return {"class": classes[index], "box": [left, top, right - left, bottom - top]}


def _image_record(line_no: int, image: Path, external_id: str, label_file: Path, classes: dict[int, str]):
    if image.is_symlink() and outside_tenant_folder(image):
        return LineError(line_no, f"images/{external_id}", LINK_OUT)
    size = image_size(image)
    if size is None:
        return LineError(line_no, f"images/{external_id}", UNREADABLE_IMAGE)
    labels = []
    if label_file.is_file():
        where = f"labels/{Path(external_id).with_suffix('.txt').as_posix()}"
        if outside_tenant_folder(label_file):  # the file, or a folder on its way, links elsewhere
            return LineError(line_no, where, LINK_OUT)
        # A label file is one datarow's labels: read whole, so held to the size of a manifest line.
        if label_file.stat().st_size > settings.IMPORT_MAX_LINE_BYTES:
            return LineError(line_no, where, too_long_message(settings.IMPORT_MAX_LINE_BYTES))
        try:
            lines = label_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            return LineError(line_no, where, "is not valid UTF-8")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                labels.append(_label(line, classes, *size))
            except _BadLabel as bad:
                return LineError(line_no, f"{where}:{number}", str(bad))
    return record_from_dict(
        line_no, {"external_id": external_id, "uri": str(image), "width": size[0], "height": size[1], "labels": labels}
    )


def yolo_records(uri: str, *, images_uri: str | None = None) -> Iterator[tuple[int, object]]:
    """`images_uri`, a local folder, holds the images instead of images/ (labels/ keeps their relative paths)."""
    root = readable_local_folder(uri)
    named = _class_names(root)
    if isinstance(named, LineError):
        yield 0, named
        return
    classes, class_file = named
    labels = root / "labels"
    if images_uri and not is_local_uri(images_uri):
        yield 0, LineError(0, "images_uri", "must be a local folder for a YOLO import")
        return
    try:
        images = readable_local_folder(images_uri) if images_uri else root / "images"
    except StorageError as error:
        yield 0, LineError(0, "images_uri", error.message)
        return
    if not images.is_dir():
        yield 0, LineError(0, "images", "is missing: a YOLO folder has images/ and labels/")
        return
    for name, folder in (("images", images), ("labels", labels)):
        if outside_tenant_folder(folder):
            yield 0, LineError(0, name, LINK_OUT)
            return
    for line_no, image in enumerate(files_under(images, is_image), start=1):
        relative = image.relative_to(images)
        label_file = labels / relative.with_suffix(".txt")
        yield line_no, _image_record(line_no, image, relative.as_posix(), label_file, classes)
    if not labels.is_dir():
        return
    for label_file in files_under(labels, lambda name: name.endswith(".txt")):
        relative = label_file.relative_to(labels)
        if label_file != class_file and not any(
            (images / relative.with_suffix(suffix)).is_file() for suffix in IMAGE_SUFFIX_SPELLINGS
        ):
            yield 0, LineError(0, f"labels/{relative.as_posix()}", "has no image in images/ at the same path")
