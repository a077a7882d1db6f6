"""Validation of imported datarow records and their append to the COPY buffers of a batch.

A record is the manifest's shape, whatever the source format:
    {"external_id": str, "uri": str, "width": int?, "height": int?, "media_type": "image"?,
     "metadata": {...}?, "tags": [str]?,
     "labels": [{"class": str, "box": [x, y, w, h]?, "polygon": [[x, y], ...]?, "attributes": {...}?}]?,
     "predictions": [{"model": str?, "version": str?, "class": str, "score": 0..1, "box"/"polygon"?}]?}
A label without box or polygon is a classification. Types and ranges are checked by msgspec while it
decodes (C speed: this is the hot loop of every import); the rest below. Every problem becomes a
LineError naming the field.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

import msgspec
from django.conf import settings

from datasets.importers import copy_format as cf
from datasets.importers.json_depth import exceeds_depth, too_deep_message
from mlops.storage import LocalUriCheck

MAX_TAGS = 1000
MAX_STRING = 10_000
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$")
# Boxes may touch the image border; a pixel of tolerance absorbs float rounding in exported files.
BOX_TOLERANCE = 1.0
OUTSIDE_TENANT_FOLDER = "is a local path outside this tenant's folder (relative paths are taken from it)"
_FIELD_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"^Object missing required field `(.+)`")

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING)]
Pixels = Annotated[int, msgspec.Meta(gt=0, lt=1_000_000)]
Box = Annotated[list[Annotated[float, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=4, max_length=4)]
Point = Annotated[list[float], msgspec.Meta(min_length=2, max_length=2)]
Polygon = Annotated[list[Point], msgspec.Meta(min_length=3)]


class LabelRecord(msgspec.Struct, forbid_unknown_fields=True):
    class_name: NonEmpty = msgspec.field(name="class")
    box: Box | None = None
    polygon: Polygon | None = None
    attributes: dict[str, Any] = {}


class PredictionRecord(LabelRecord, forbid_unknown_fields=True):
    score: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    model: NonEmpty | None = None
    version: NonEmpty | None = None


class DataRowRecord(msgspec.Struct):
    external_id: NonEmpty
    uri: NonEmpty
    width: Pixels | None = None
    height: Pixels | None = None
    media_type: str = "image"
    metadata: dict[str, Any] = {}
    tags: Annotated[list[NonEmpty], msgspec.Meta(max_length=MAX_TAGS)] = []
    labels: list[LabelRecord] | None = None
    predictions: list[PredictionRecord] | None = None


_decode_json_record = msgspec.json.Decoder(DataRowRecord).decode
_convert_record = msgspec.convert
_encode_json = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


class BadRecord(Exception):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name
        self.message = message


_TYPE_WORDS = {
    "`array`": "a list",
    "`object`": "an object",
    "`str`": "a string",
    "`int`": "a whole number",
    "`float`": "a number",
    "`bool`": "true or false",
    "`null`": "null",
    " of length": " with a length",
}


def _in_words(text: str) -> str:
    for msgspec_word, word in _TYPE_WORDS.items():
        text = text.replace(msgspec_word, word)
    return text


def error_from_msgspec(line_no: int, error: Exception) -> LineError:
    """`Expected int >= 1 - at $.labels[0].box[2]` -> field `labels[0].box[2]`, message `Expected a whole number >= 1`."""
    text = str(error)
    if not isinstance(error, msgspec.ValidationError):  # ValidationError subclasses DecodeError
        return LineError(line_no, "(line)", f"is not valid JSON ({text.removeprefix('JSON is malformed: ')})")
    missing = _MISSING.match(text)
    located = _FIELD_PATH.search(text)
    if missing:
        prefix = located.group(1) + "." if located and located.group(1) else ""
        return LineError(line_no, prefix + missing.group(1), "is required")
    if located:
        return LineError(line_no, located.group(1) or "(line)", _in_words(text[: located.start()]))
    return LineError(line_no, "(line)", "must be a JSON object" if "got `" in text else _in_words(text))


def decode_json_record(line_no: int, line: bytes) -> DataRowRecord | LineError:
    limit = settings.IMPORT_MAX_JSON_DEPTH
    if exceeds_depth(line, limit):
        return LineError(line_no, "(line)", too_deep_message(limit))
    try:
        return _decode_json_record(line)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        return error_from_msgspec(line_no, error)
    except UnicodeDecodeError:
        return LineError(line_no, "(line)", "is not valid UTF-8")
    except RecursionError:  # malformed text the depth count cannot judge (openers never closed)
        return LineError(line_no, "(line)", too_deep_message(limit))


def record_from_dict(line_no: int, raw: object) -> DataRowRecord | LineError:
    """For sources that build records as dicts (CSV, YOLO, image folders)."""
    try:
        return _convert_record(raw, DataRowRecord)
    except msgspec.ValidationError as error:
        return error_from_msgspec(line_no, error)


def metadata_leaves(tree: dict, prefix: str = "") -> dict[str, str]:
    """Path -> type for every leaf; lists contribute their elements' type under the list's own path."""
    leaves: dict[str, str] = {}
    for key, value in tree.items():
        if not key or "." in key or key[0] == "$":
            raise BadRecord(
                f"metadata.{prefix}{key}", "metadata keys must be non-empty and contain no '.' or leading '$'"
            )
        path = prefix + key
        for item in value if type(value) is list else (value,):
            kind = type(item)
            if kind is dict:
                leaves.update(metadata_leaves(item, path + "."))
                continue
            if kind is str:
                leaf_type = "datetime" if item[:1].isdigit() and ISO_DATETIME.match(item) else "string"
            elif kind is int or kind is float:
                leaf_type = "number"
            elif kind is bool:
                leaf_type = "boolean"
            elif item is None:
                continue
            else:
                raise BadRecord(f"metadata.{path}", "lists of lists are not supported")
            previous = leaves.setdefault(path, leaf_type)
            if previous != leaf_type:
                raise BadRecord(f"metadata.{path}", f"mixes {previous} and {leaf_type} values")
    return leaves


class Geometry(NamedTuple):
    kind: str
    x: float | None = None
    y: float | None = None
    w: float | None = None
    h: float | None = None
    area: float | None = None
    polygon: list | None = None

    def copy_columns(self, name: str) -> str:
        """kind, x, y, w, h, area, polygon as COPY text (boxes, the common case, without a function call each)."""
        if self.kind == "box":
            return f"box\t{self.x!r}\t{self.y!r}\t{self.w!r}\t{self.h!r}\t{self.area!r}\t\\N"
        if self.kind == "classification":
            return _CLASSIFICATION_COLUMNS
        return "\t".join(
            (
                self.kind,
                cf.number(self.x),
                cf.number(self.y),
                cf.number(self.w),
                cf.number(self.h),
                cf.number(self.area),
                _json_text(self.polygon, f"{name}.polygon"),
            )
        )


CLASSIFICATION = Geometry("classification")
_CLASSIFICATION_COLUMNS = "classification\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N"


def geometry(item: LabelRecord, name: str, width: int | None, height: int | None) -> Geometry:
    """Box or polygon of a label or prediction, checked against the image size when it is known."""
    if item.polygon is not None:
        points = item.polygon
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x, y = min(xs), min(ys)
        area = (
            abs(sum(points[i][0] * points[i - 1][1] - points[i - 1][0] * points[i][1] for i in range(len(points)))) / 2
        )
        shape = Geometry("polygon", x, y, max(xs) - x, max(ys) - y, area, points)
        where = f"{name}.polygon"
        if x < 0 or y < 0:
            raise BadRecord(where, "has a point left of or above the image")
    elif item.box is not None:
        x, y, w, h = item.box
        if w <= 0 or h <= 0:
            raise BadRecord(f"{name}.box", "needs a positive width and height")
        shape = Geometry("box", x, y, w, h, w * h)
        where = f"{name}.box"
    else:
        return CLASSIFICATION
    if width is not None and shape.x + shape.w > width + BOX_TOLERANCE:
        raise BadRecord(where, f"extends past the image's right edge (x + width = {shape.x + shape.w:g} > {width})")
    if height is not None and shape.y + shape.h > height + BOX_TOLERANCE:
        raise BadRecord(where, f"extends past the image's bottom edge (y + height = {shape.y + shape.h:g} > {height})")
    return shape


def check_class_path(class_name: str, name: str) -> None:
    if class_name[0] == "/" or class_name[-1] == "/" or "//" in class_name or "\x00" in class_name:
        raise BadRecord(f"{name}.class", "a class path looks like 'vehicle/car/sedan'")


def _json_text(value, name: str) -> str:
    dumped = _encode_json(value).decode()
    if "\\u0000" in dumped:
        raise BadRecord(name, "must not contain NUL characters")
    return cf.text(dumped)


@dataclass(frozen=True)
class FormatOptions:
    """The import options some formats read beside their source: where a COCO or YOLO file's images are, whether
    to look each one up, and whether the file's classes (COCO categories) may join the ontology."""

    images_uri: str | None = None
    check_images: bool = False
    create_classes: bool = False


@dataclass
class BatchBuffers:
    """COPY text for the three staging tables, each valid line's metadata paths, and the bad lines."""

    rows: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    line_paths: dict[int, tuple[str, ...]] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)
    # Formats that fill the staging tables with SQL (COCO) set this; it runs on the import connection.
    stage_sql: Callable[[Any], None] | None = None

    @property
    def size(self) -> int:
        return len(self.rows)


class RecordWriter:
    """Checks records against the project's field catalog and appends them to a batch."""

    def __init__(self, catalog_types: dict[str, str], default_model: tuple[str, str] | None = None):
        # Types first seen in this import join the catalog's for the rest of the file.
        self.catalog_types = dict(catalog_types)
        self.default_model = default_model
        # Built in the import's tenant: a datarow may name local files of that tenant's folder only.
        self.local_uris = LocalUriCheck()

    def add(self, batch: BatchBuffers, line_no: int, record: DataRowRecord) -> None:
        try:
            row, labels, predictions, leaves = self._rows(line_no, record)
        except BadRecord as bad:
            batch.errors.append(LineError(line_no, bad.field, bad.message))
            return
        for path, kind in leaves.items():
            self.catalog_types.setdefault(path, kind)
        batch.line_paths[line_no] = tuple(leaves)
        batch.rows.append(row)
        batch.labels.extend(labels)
        batch.predictions.extend(predictions)

    def _rows(self, line_no: int, record: DataRowRecord):
        if record.media_type != "image":
            raise BadRecord("media_type", "only 'image' is supported")
        for name, value in (("external_id", record.external_id), ("uri", record.uri)):
            if "\x00" in value:
                raise BadRecord(name, "must not contain NUL characters")
        if self.local_uris.outside(record.uri):
            raise BadRecord("uri", OUTSIDE_TENANT_FOLDER)
        max_items, max_keys = settings.IMPORT_MAX_ITEMS_PER_ROW, settings.IMPORT_MAX_METADATA_KEYS
        for name, items in (("labels", record.labels), ("predictions", record.predictions)):
            if items and len(items) > max_items:
                raise BadRecord(name, f"has {len(items)} items; the limit is {max_items} (IMPORT_MAX_ITEMS_PER_ROW)")
        leaves = metadata_leaves(record.metadata)
        if len(leaves) > max_keys:
            raise BadRecord("metadata", f"has {len(leaves)} fields; the limit is {max_keys} (IMPORT_MAX_METADATA_KEYS)")
        for path, kind in leaves.items():
            known = self.catalog_types.get(path)
            if known is not None and known != kind:
                raise BadRecord(f"metadata.{path}", f"is {kind} here but {known} in the project's field catalog")
        tags = sorted(set(record.tags))
        if any("\x00" in tag for tag in tags):
            raise BadRecord("tags", "must not contain NUL characters")
        line, external = str(line_no), cf.text(record.external_id)
        width, height = record.width, record.height
        labels = [self._label_row(line, i, external, item, width, height) for i, item in enumerate(record.labels or ())]
        predictions = [
            self._prediction_row(line, i, external, item, width, height)
            for i, item in enumerate(record.predictions or ())
        ]
        row = (
            "\t".join(
                (
                    line,
                    external,
                    cf.text(record.uri),
                    "image",
                    cf.number(width),
                    cf.number(height),
                    _json_text(record.metadata, "metadata"),
                    cf.text_array(tags),
                    "f" if record.labels is None else "t",
                    "f" if record.predictions is None else "t",
                )
            )
            + "\n"
        )
        return row, labels, predictions, leaves

    @staticmethod
    def _annotation_columns(item: LabelRecord, name: str, width, height) -> str:
        check_class_path(item.class_name, name)
        shape = geometry(item, name, width, height).copy_columns(name)
        attributes = _json_text(item.attributes, f"{name}.attributes") if item.attributes else "{}"
        return f"{cf.text(item.class_name)}\t{shape}\t{attributes}"

    def _label_row(self, line: str, item_no: int, external: str, item: LabelRecord, width, height) -> str:
        columns = self._annotation_columns(item, f"labels[{item_no}]", width, height)
        return f"{line}\t{item_no}\t{external}\t{columns}\n"

    def _prediction_row(self, line: str, item_no: int, external: str, item: PredictionRecord, width, height) -> str:
        name = f"predictions[{item_no}]"
        model = item.model or (self.default_model and self.default_model[0])
        version = item.version or (self.default_model and self.default_model[1])
        if not model or not version:
            raise BadRecord(f"{name}.model", "a prediction names its model and version (or the import sets a default)")
        if item.score is None:
            raise BadRecord(f"{name}.score", "is required")
        columns = self._annotation_columns(item, name, width, height)
        return f"{line}\t{item_no}\t{external}\t{cf.text(model)}\t{cf.text(version)}\t{item.score!r}\t{columns}\n"
