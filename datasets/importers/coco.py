"""COCO detection files (`coco`) and COCO results files (`coco_results`), streamed and joined in SQL.

A file may be gigabytes, so ijson reads each array in one pass; elements are checked alone, COPied into the import
session's temp tables and joined there. The mapping to datarows, labels and predictions, and how errors are located
(line = the image's 1-based position, field = the JSON path), are in docs/design/datasets-storage.md, "COCO files".
"""

from collections.abc import Callable, Generator, Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any, BinaryIO, TypeVar

import ijson
import msgspec
import psycopg
from django.conf import settings

from datasets.importers import copy_format as cf
from datasets.importers import staging
from datasets.importers.image_paths import ImageRoot, image_root
from datasets.importers.json_depth import JsonDepth, too_deep_message
from datasets.importers.records import (
    BOX_TOLERANCE,
    OUTSIDE_TENANT_FOLDER,
    BadRecord,
    BatchBuffers,
    Box,
    FormatOptions,
    Geometry,
    LabelRecord,
    LineError,
    NonEmpty,
    Pixels,
    RecordWriter,
    _json_text,
    check_class_path,
    error_from_msgspec,
    geometry,
)
from mlops.storage import LocalUriCheck, StorageError, local_copy

IMAGE_ID_PATH = "coco.image_id"
# What ijson reads at a time; a syntax error is located within one such read.
READ_BYTES = 64 * 1024
ANNOTATION_KEYS = frozenset({"id", "image_id", "category_id", "bbox", "segmentation", "area"})
DETECTION_KEYS = frozenset({"image_id", "category_id", "bbox", "segmentation", "score"})
Segmentation = list[list[float]] | dict[str, Any] | None
T = TypeVar("T")
Stage = Callable[[psycopg.Connection, BatchBuffers], None]


class Category(msgspec.Struct):
    id: int
    name: NonEmpty


class Image(msgspec.Struct):
    id: int
    file_name: NonEmpty
    width: Pixels | None = None
    height: Pixels | None = None
    coco_url: NonEmpty | None = None


class Annotation(msgspec.Struct):
    image_id: int
    category_id: int
    bbox: Box
    segmentation: Segmentation = None


class Detection(msgspec.Struct):
    image_id: int
    category_id: int
    bbox: Box
    score: Annotated[float, msgspec.Meta(ge=0, le=1)]
    segmentation: Segmentation = None


CATEGORY_COLUMNS = "ordinal, id, name, field, problem"
IMAGE_COLUMNS = "ordinal, id, file_name, uri, width, height, field, problem"
SHAPE_COLUMNS = "kind, x, y, w, h, area, polygon, attributes, field, problem"
ANNOTATION_COLUMNS = f"ordinal, image_id, category_id, {SHAPE_COLUMNS}"
DETECTION_COLUMNS = f"ordinal, image_id, category_id, score, {SHAPE_COLUMNS}"
SHAPE_TYPES = (
    "kind text, x float8, y float8, w float8, h float8, area float8, polygon jsonb, attributes jsonb, "
    "field text, problem text"
)

# `ordinal` is the element's 0-based index in its array; `field`/`problem` are set when it is bad.
CREATE_COCO_TABLES = f"""
CREATE TEMP TABLE coco_categories (ordinal bigint, id bigint, name text, field text, problem text);
CREATE TEMP TABLE coco_images (ordinal bigint, id bigint, file_name text, uri text, width int, height int,
                               field text, problem text);
CREATE TEMP TABLE coco_annotation_chunk (ordinal bigint, image_id bigint, category_id bigint, {SHAPE_TYPES});
CREATE TEMP TABLE coco_annotations (LIKE coco_annotation_chunk);
"""
CREATE_RESULT_TABLES = f"""
CREATE TEMP TABLE coco_result_chunk (ordinal bigint, image_id bigint, category_id bigint, score float8, {SHAPE_TYPES});
CREATE TEMP TABLE coco_results (LIKE coco_result_chunk);
CREATE TEMP TABLE coco_result_images (image_id bigint, line_no bigint, batch bigint);
CREATE TEMP TABLE coco_dataset_images AS
    SELECT d.metadata #>> '{{coco,image_id}}' AS image_key, d.external_id, d.width, d.height,
           count(*) OVER (PARTITION BY d.metadata #>> '{{coco,image_id}}') AS datarows
    FROM datasets_datarow d JOIN import_target t ON d.dataset_id = t.dataset_id
    WHERE d.metadata #>> '{{coco,image_id}}' IS NOT NULL;
CREATE INDEX ON coco_dataset_images (image_key);
ANALYZE coco_dataset_images;
"""


def _flag_later_duplicates(table: str, array: str, column: str) -> str:
    """SQL marking every element that repeats an earlier element's `column`."""
    return f"""
        UPDATE {table} t SET field = format('{array}[%s].{column}', t.ordinal),
                             problem = format('duplicates {array}[%s].{column}', d.first)
        FROM (SELECT ordinal, min(ordinal) OVER (PARTITION BY {column}) AS first FROM {table} WHERE problem IS NULL) d
        WHERE t.ordinal = d.ordinal AND d.ordinal <> d.first;"""


def _flag_outside_image(chunk: str, images: str, join: str, path: str) -> str:
    """SQL marking every shape `a` of `chunk` that extends past its image `m` (the shape's image by `join`)."""
    past_right = f"a.x + a.w > m.width + {BOX_TOLERANCE!r}"
    past_bottom = f"a.y + a.h > m.height + {BOX_TOLERANCE!r}"
    return f"""
        UPDATE {chunk} a SET
            field = format('{path}.%s', a.ordinal, CASE a.kind WHEN 'polygon' THEN 'segmentation' ELSE 'bbox' END),
            problem = CASE WHEN {past_right}
                THEN format('extends past the image''s right edge (x + width = %s > %s)', a.x + a.w, m.width)
                ELSE format('extends past the image''s bottom edge (y + height = %s > %s)', a.y + a.h, m.height) END
        FROM {images} m
        WHERE {join} AND a.problem IS NULL AND ({past_right} OR {past_bottom})"""


CHECK_CATEGORIES = _flag_later_duplicates("coco_categories", "categories", "id") + _flag_later_duplicates(
    "coco_categories", "categories", "name"
)
CHECK_IMAGES = (
    "CREATE INDEX ON coco_images (id); CREATE INDEX ON coco_images (ordinal); ANALYZE coco_images;"
    + _flag_later_duplicates("coco_images", "images", "id")
)
CHECK_ANNOTATION_CHUNK = (
    # An annotation of an unknown image belongs to no image: it is detached (image_id NULL), reported on line 0.
    # A probe of the images' id index per annotation (the LIMIT keeps it one): an anti-join would hash every
    # image again for each chunk, which grows with images x annotations.
    """UPDATE coco_annotation_chunk a SET image_id = NULL, field = format('annotations[%s].image_id', a.ordinal),
                                        problem = format('image id %s is not in images', a.image_id)
       WHERE a.image_id IS NOT NULL AND (SELECT i.id FROM coco_images i WHERE i.id = a.image_id LIMIT 1) IS NULL""",
    """UPDATE coco_annotation_chunk a SET field = format('annotations[%s].category_id', a.ordinal),
                                        problem = format('category id %s is not in categories', a.category_id)
       WHERE a.problem IS NULL
         AND NOT EXISTS (SELECT 1 FROM coco_categories c WHERE c.id = a.category_id AND c.problem IS NULL)""",
    _flag_outside_image(
        "coco_annotation_chunk", "coco_images", "m.id = a.image_id AND m.problem IS NULL", "annotations[%s]"
    ),
)
MOVE_ANNOTATION_CHUNK = """
    INSERT INTO coco_annotations SELECT * FROM coco_annotation_chunk WHERE image_id IS NOT NULL;
    TRUNCATE coco_annotation_chunk"""
INDEX_ANNOTATIONS = "CREATE INDEX ON coco_annotations (image_id); ANALYZE coco_annotations, coco_categories"
# With create_classes, every category becomes a class (with its ancestors), annotated or not: the generic check of
# the batch this runs in creates what import_classes names.
CATEGORY_CLASSES = staging.class_paths_sql("SELECT name AS class_name FROM coco_categories WHERE problem IS NULL")
# Without it, an annotation of a category the ontology lacks is reported at its category_id, by the category's name.
FLAG_UNKNOWN_CATEGORIES = """
    UPDATE coco_annotations a SET field = format('annotations[%s].category_id', a.ordinal),
        problem = format('category %L (id %s) is not a class of the project''s ontology; import with '
                         'create_classes=true to add the file''s categories', c.name, c.id)
    FROM coco_categories c CROSS JOIN import_target t
    WHERE a.problem IS NULL AND c.id = a.category_id AND c.problem IS NULL
      AND NOT EXISTS (SELECT 1 FROM datasets_ontologyclass o WHERE o.project_id = t.project_id AND o.name = c.name)"""
IMAGE_BATCH_ERRORS = """
    SELECT ordinal + 1, field, problem FROM coco_images
    WHERE ordinal >= %(start)s AND ordinal < %(end)s AND problem IS NOT NULL
    UNION ALL
    SELECT i.ordinal + 1, a.field, a.problem FROM coco_images i JOIN coco_annotations a ON a.image_id = i.id
    WHERE i.ordinal >= %(start)s AND i.ordinal < %(end)s AND i.problem IS NULL AND a.problem IS NOT NULL"""
FILL_IMAGE_ROWS = """
    INSERT INTO import_rows (line_no, external_id, uri, media_type, width, height, metadata, tags, has_labels,
                             has_predictions)
    SELECT ordinal + 1, file_name, uri, 'image', width, height,
           jsonb_build_object('coco', jsonb_build_object('image_id', id)), '{}', %(has_labels)s, false
    FROM coco_images
    WHERE ordinal >= %(start)s AND ordinal < %(end)s AND problem IS NULL AND ordinal + 1 <> ALL(%(rejected)s::bigint[])
    RETURNING line_no"""
FILL_IMAGE_LABELS = """
    INSERT INTO import_labels (line_no, item_no, external_id, class_name, kind, x, y, w, h, area, polygon, attributes)
    SELECT r.line_no, a.ordinal, r.external_id, c.name, a.kind, a.x, a.y, a.w, a.h, a.area, a.polygon, a.attributes
    FROM import_rows r
    JOIN coco_images i ON i.ordinal = r.line_no - 1
    JOIN coco_annotations a ON a.image_id = i.id
    JOIN coco_categories c ON c.id = a.category_id AND c.problem IS NULL"""
REMEMBER_CATEGORY_IDS = (
    # A class holding one of these ids under another name gives it up first: an id names one class per project.
    """UPDATE datasets_ontologyclass o SET coco_category_id = NULL FROM import_target t, coco_categories c
       WHERE o.project_id = t.project_id AND c.problem IS NULL AND o.coco_category_id = c.id AND o.name <> c.name""",
    """UPDATE datasets_ontologyclass o SET coco_category_id = c.id FROM import_target t, coco_categories c
       WHERE o.project_id = t.project_id AND c.problem IS NULL AND o.name = c.name
         AND o.coco_category_id IS DISTINCT FROM c.id""",
)
CHECK_DETECTION_CHUNK = (
    """UPDATE coco_result_chunk a SET field = format('[%s].image_id', a.ordinal),
           problem = format('image id %s is on no datarow of this dataset (import its COCO file first)', a.image_id)
       WHERE a.problem IS NULL
         AND NOT EXISTS (SELECT 1 FROM coco_dataset_images m WHERE m.image_key = a.image_id::text)""",
    """UPDATE coco_result_chunk a SET field = format('[%s].image_id', a.ordinal),
           problem = format('image id %s is on %s datarows of this dataset', a.image_id, m.datarows)
       FROM coco_dataset_images m WHERE a.problem IS NULL AND m.image_key = a.image_id::text AND m.datarows > 1""",
    """UPDATE coco_result_chunk a SET field = format('[%s].category_id', a.ordinal),
           problem = format('category id %s is on no class of the project''s ontology (import its COCO file first)',
                            a.category_id)
       WHERE a.problem IS NULL AND NOT EXISTS (
           SELECT 1 FROM datasets_ontologyclass o JOIN import_target t ON o.project_id = t.project_id
           WHERE o.coco_category_id = a.category_id)""",
    _flag_outside_image("coco_result_chunk", "coco_dataset_images", "m.image_key = a.image_id::text", "[%s]"),
)
MOVE_DETECTION_CHUNK = """
    INSERT INTO coco_results SELECT * FROM coco_result_chunk WHERE problem IS NULL;
    TRUNCATE coco_result_chunk"""
# Images in order of their first detection, cut into batches of about batch_lines detections.
GROUP_DETECTIONS = """
    INSERT INTO coco_result_images (image_id, line_no, batch)
    SELECT image_id, min(ordinal) + 1, div(sum(count(*)) OVER (ORDER BY min(ordinal)) - count(*), %(batch_lines)s)
    FROM coco_results GROUP BY image_id"""
INDEX_DETECTIONS = (
    "CREATE INDEX ON coco_results (image_id); CREATE INDEX ON coco_result_images (batch); "
    "ANALYZE coco_results, coco_result_images"
)
FILL_DETECTION_ROWS = """
    INSERT INTO import_rows (line_no, external_id, uri, media_type, width, height, metadata, tags, has_labels,
                             has_predictions)
    SELECT b.line_no, d.external_id, d.uri, d.media_type, d.width, d.height, d.metadata, d.tags, false, true
    FROM coco_result_images b
    JOIN coco_dataset_images m ON m.image_key = b.image_id::text
    CROSS JOIN import_target t
    JOIN datasets_datarow d ON d.dataset_id = t.dataset_id AND d.external_id = m.external_id
    WHERE b.batch = %(batch)s
    RETURNING line_no"""
FILL_DETECTION_PREDICTIONS = """
    INSERT INTO import_predictions (line_no, item_no, external_id, model_name, model_version, class_name, kind, score,
                                    x, y, w, h, area, polygon, attributes)
    SELECT b.line_no, r.ordinal, m.external_id, %(model_name)s, %(model_version)s, o.name, r.kind, r.score,
           r.x, r.y, r.w, r.h, r.area, r.polygon, r.attributes
    FROM coco_result_images b
    JOIN coco_dataset_images m ON m.image_key = b.image_id::text
    JOIN coco_results r ON r.image_id = b.image_id
    CROSS JOIN import_target t
    JOIN datasets_ontologyclass o ON o.project_id = t.project_id AND o.coco_category_id = r.category_id
    WHERE b.batch = %(batch)s"""


def _sql_batch(stage: Stage) -> BatchBuffers:
    """A batch staged by `stage`, which may add the errors and line paths it finds in SQL to the batch."""
    batch = BatchBuffers()
    # `stage` fills the batch's own list and dict through a second holder: a closure over the batch itself
    # would be a reference cycle, kept (with its COPY chunk) until the garbage collector comes by.
    found = BatchBuffers(errors=batch.errors, line_paths=batch.line_paths)
    batch.stage_sql = lambda conn: stage(conn, found)
    return batch


def _execute(*statements: str) -> Stage:
    def stage(conn: psycopg.Connection, batch: BatchBuffers) -> None:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    return stage


class _TooDeep(Exception):
    """The file nests deeper than IMPORT_MAX_JSON_DEPTH: stops reading it before ijson builds the item."""


class _TrackedReader:
    """A file that remembers which bytes it handed out last, to say where a syntax error lies, and that stops
    at the first read nesting deeper than IMPORT_MAX_JSON_DEPTH, before ijson builds anything from it."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self._depth, self._max_depth = JsonDepth(), settings.IMPORT_MAX_JSON_DEPTH
        self.start = self.end = 0

    def read(self, size: int) -> bytes:
        data = self._file.read(size)
        self.start, self.end = self.end, self.end + len(data)
        if self._depth.feed(data) > self._max_depth:
            raise _TooDeep
        return data


def _syntax_error(error: Exception, reader: _TrackedReader) -> LineError:
    # yajl says what is wrong and shows the text around it ("parse error: ...\n <text>\n (right here) --^"),
    # but not where: the read it failed in says that.
    text = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else str(error)
    reason, _, context = text.partition("\n")
    excerpt = context.partition("\n")[0].strip().replace("\x00", "")
    where = f"at byte {reader.start}" if reader.start == reader.end else f"in bytes {reader.start}-{reader.end}"
    return LineError(0, "(file)", f"is not valid JSON: {reason}, {where}" + (f" near `{excerpt}`" if excerpt else ""))


def _load(
    path: Path,
    prefix: str,
    table: str,
    columns: str,
    to_line: Callable[[int, object], str],
    batch_lines: int,
    check: Stage | None = None,
    finish: Callable[[int, list[str]], None] | None = None,
) -> Generator[BatchBuffers, None, tuple[int, LineError | None]]:
    """Stream the array at `prefix` into `table`, batch_lines elements per batch, each COPied (then checked) by
    its batch; return the element count and the syntax error that stopped the stream, if any. `finish(start,
    lines)` may still rewrite a chunk's lines (its first element's ordinal `start`) before they are copied."""
    count, lines = 0, []

    def copy_batch(chunk: list[str]) -> BatchBuffers:
        if finish:
            finish(count - len(chunk), chunk)

        def stage(conn: psycopg.Connection, batch: BatchBuffers) -> None:
            staging.copy_into(conn, table, columns, chunk)
            if check:
                check(conn, batch)

        return _sql_batch(stage)

    with open(path, "rb") as file:
        reader = _TrackedReader(file)
        try:
            for raw in ijson.items(reader, prefix, use_float=True, buf_size=READ_BYTES):
                lines.append(to_line(count, raw))
                count += 1
                if len(lines) == batch_lines:
                    yield copy_batch(lines)
                    lines = []
        except (ijson.JSONError, UnicodeDecodeError) as error:
            return count, _syntax_error(error, reader)
        except _TooDeep:
            where = f"in bytes {reader.start}-{reader.end}"
            return count, LineError(0, "(file)", f"{too_deep_message(settings.IMPORT_MAX_JSON_DEPTH)}, {where}")
    if lines:
        yield copy_batch(lines)
    return count, None


def _line(*columns: str) -> str:
    return "\t".join(columns) + "\n"


def _problem_line(ordinal: int, key: int | None, columns: str, bad: BadRecord) -> str:
    """The row of a bad element: its ordinal, whatever id it can still be found by, NULLs, then the problem."""
    nulls = [cf.NULL] * (len(columns.split(",")) - 4)
    return _line(str(ordinal), cf.number(key), *nulls, cf.text(bad.field), cf.text(bad.message))


def _whole_number(raw: object, key: str) -> int | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if type(value) is int else None


def _parse(raw: object, struct: type[T], path: str) -> T:
    try:
        return msgspec.convert(raw, struct)
    except msgspec.ValidationError as error:
        located = error_from_msgspec(0, error)
        raise BadRecord(path if located.field == "(line)" else f"{path}.{located.field}", located.message) from None


def _at(field_name: str, check: Callable[[], T]) -> T:
    """Run a shared validator, its BadRecord re-located at the COCO key it checked."""
    try:
        return check()
    except BadRecord as bad:
        raise BadRecord(field_name, bad.message) from None


def _shape(element: Annotation | Detection, path: str) -> Geometry:
    """The first polygon of `segmentation` when there is one, else `bbox` (an RLE segmentation keeps the box)."""
    polygon = None
    if isinstance(element.segmentation, list) and element.segmentation:
        flat = element.segmentation[0]
        if len(flat) % 2 or len(flat) < 6:
            raise BadRecord(f"{path}.segmentation[0]", "must be a flat list of at least 3 x, y pairs")
        polygon = [flat[i : i + 2] for i in range(0, len(flat), 2)]
    # The class is not known here (it is joined in SQL); the category id stands in for it.
    shape = LabelRecord(class_name=str(element.category_id), box=element.bbox, polygon=polygon)
    return _at(f"{path}.{'segmentation' if polygon else 'bbox'}", lambda: geometry(shape, path, None, None))


def _shape_columns(raw: dict, shape: Geometry, keys: frozenset[str], path: str) -> tuple[str, ...]:
    attributes = _json_text({key: value for key, value in raw.items() if key not in keys}, f"{path}.attributes")
    polygon = _json_text(shape.polygon, f"{path}.segmentation") if shape.polygon else cf.NULL
    return (
        shape.kind,
        cf.number(shape.x),
        cf.number(shape.y),
        cf.number(shape.w),
        cf.number(shape.h),
        cf.number(shape.area),
        polygon,
        attributes,
        cf.NULL,
        cf.NULL,
    )


def _category_line(ordinal: int, raw: object) -> str:
    path = f"categories[{ordinal}]"
    try:
        category = _parse(raw, Category, path)
        _at(f"{path}.name", lambda: check_class_path(category.name, path))
    except BadRecord as bad:
        return _problem_line(ordinal, _whole_number(raw, "id"), CATEGORY_COLUMNS, bad)
    return _line(str(ordinal), str(category.id), cf.text(category.name), cf.NULL, cf.NULL)


class _ImageLines:
    """images[i] as COPY lines, each with the URI of its image: its file_name resolved against the images root
    (coco_url instead when there is one and the import gave no images_uri). Objects to look up (check_images on
    s3) are looked up chunk by chunk, together, in `finish`."""

    def __init__(self, root: ImageRoot, local_uris: LocalUriCheck):
        self.root, self.local_uris = root, local_uris
        self.lookups: list[tuple[int, int, str]] = []  # ordinal, image id, URI

    def line(self, ordinal: int, raw: object) -> str:
        path = f"images[{ordinal}]"
        try:
            image = _parse(raw, Image, path)
            for key in ("file_name", "coco_url"):
                if "\x00" in (getattr(image, key) or ""):
                    raise BadRecord(f"{path}.{key}", "must not contain NUL characters")
            by_url = bool(image.coco_url) and not self.root.explicit
            field = f"{path}.{'coco_url' if by_url else 'file_name'}"
            uri = image.coco_url if by_url else self.root.resolve(image.file_name, field)
            if self.local_uris.outside(uri):
                raise BadRecord(field, OUTSIDE_TENANT_FOLDER)
        except BadRecord as bad:
            return _problem_line(ordinal, _whole_number(raw, "id"), IMAGE_COLUMNS, bad)
        if self.root.looks_up_objects and not by_url:
            self.lookups.append((ordinal, image.id, uri))
        return _line(
            str(ordinal),
            str(image.id),
            cf.text(image.file_name),
            cf.text(uri),
            cf.number(image.width),
            cf.number(image.height),
            cf.NULL,
            cf.NULL,
        )

    def finish(self, start: int, lines: list[str]) -> None:
        if not self.lookups:
            return
        missing = self.root.missing_objects([uri for _, _, uri in self.lookups])
        for (ordinal, image_id, uri), gone in zip(self.lookups, missing, strict=True):
            if gone:
                bad = BadRecord(f"images[{ordinal}].file_name", f"is missing: no object {uri}")
                lines[ordinal - start] = _problem_line(ordinal, image_id, IMAGE_COLUMNS, bad)
        self.lookups.clear()


def _annotation_line(ordinal: int, raw: object) -> str:
    path = f"annotations[{ordinal}]"
    try:
        annotation = _parse(raw, Annotation, path)
        columns = _shape_columns(raw, _shape(annotation, path), ANNOTATION_KEYS, path)
    except BadRecord as bad:
        # Kept with its image id: the error is reported on that image's line, and the image left out.
        return _problem_line(ordinal, _whole_number(raw, "image_id"), ANNOTATION_COLUMNS, bad)
    return _line(str(ordinal), str(annotation.image_id), str(annotation.category_id), *columns)


def _detection_line(ordinal: int, raw: object) -> str:
    path = f"[{ordinal}]"
    try:
        detection = _parse(raw, Detection, path)
        columns = _shape_columns(raw, _shape(detection, path), DETECTION_KEYS, path)
    except BadRecord as bad:
        return _problem_line(ordinal, None, DETECTION_COLUMNS, bad)
    return _line(str(ordinal), str(detection.image_id), str(detection.category_id), repr(detection.score), *columns)


def _check_annotation_chunk(conn: psycopg.Connection, batch: BatchBuffers) -> None:
    with conn.cursor() as cursor:
        for statement in CHECK_ANNOTATION_CHUNK:
            cursor.execute(statement)
        cursor.execute("SELECT field, problem FROM coco_annotation_chunk WHERE image_id IS NULL ORDER BY ordinal")
        batch.errors.extend(LineError(0, field, problem) for field, problem in cursor.fetchall())
        cursor.execute(MOVE_ANNOTATION_CHUNK)


def _report_categories(conn: psycopg.Connection, batch: BatchBuffers) -> None:
    with conn.cursor() as cursor:
        cursor.execute(CHECK_CATEGORIES)
        cursor.execute("SELECT field, problem FROM coco_categories WHERE problem IS NOT NULL ORDER BY ordinal")
        batch.errors.extend(LineError(0, field, problem) for field, problem in cursor.fetchall())


def _stage_images(conn: psycopg.Connection, batch: BatchBuffers, *, start: int, end: int, has_labels: bool) -> None:
    """Images [start, end): the bad ones (or with a bad annotation) reported, the others staged with their labels."""
    with conn.cursor() as cursor:
        for statement in REMEMBER_CATEGORY_IDS:
            cursor.execute(statement)
        cursor.execute(IMAGE_BATCH_ERRORS, {"start": start, "end": end})
        batch.errors.extend(LineError(*row) for row in cursor.fetchall())
        rejected = sorted({error.line for error in batch.errors})
        cursor.execute(FILL_IMAGE_ROWS, {"start": start, "end": end, "has_labels": has_labels, "rejected": rejected})
        batch.line_paths.update((line_no, (IMAGE_ID_PATH,)) for (line_no,) in cursor.fetchall())
        cursor.execute(FILL_IMAGE_LABELS)


def _missing(array: str) -> LineError:
    return LineError(0, array, f"is missing or empty: a COCO file lists its {array}")


def coco_batches(
    uri: str, writer: RecordWriter, batch_lines: int, options: FormatOptions = FormatOptions()
) -> Iterator[BatchBuffers]:
    known = writer.catalog_types.setdefault(IMAGE_ID_PATH, "number")
    if known != "number":
        message = f"is number here but {known} in the project's field catalog"
        yield BatchBuffers(errors=[LineError(0, f"metadata.{IMAGE_ID_PATH}", message)])
        return
    with local_copy(uri) as path:
        try:
            root = image_root(uri, path, images_uri=options.images_uri, check=options.check_images)
        except StorageError as error:
            yield BatchBuffers(errors=[LineError(0, "images_uri", error.message)])
            return
        image_lines = _ImageLines(root, writer.local_uris)
        yield _sql_batch(_execute(CREATE_COCO_TABLES))
        load = partial(_load, path, batch_lines=batch_lines)
        categories, error = yield from load("categories.item", "coco_categories", CATEGORY_COLUMNS, _category_line)
        if error or not categories:
            yield BatchBuffers(errors=[error or _missing("categories")])
            return
        yield _sql_batch(_report_categories)
        images, error = yield from load(
            "images.item", "coco_images", IMAGE_COLUMNS, image_lines.line, finish=image_lines.finish
        )
        if error or not images:
            yield BatchBuffers(errors=[error or _missing("images")])
            return
        yield _sql_batch(_execute(CHECK_IMAGES))
        annotations, error = yield from load(
            "annotations.item",
            "coco_annotation_chunk",
            ANNOTATION_COLUMNS,
            _annotation_line,
            check=_check_annotation_chunk,
        )
        if error:
            yield BatchBuffers(errors=[error])
            return
    yield _sql_batch(
        _execute(INDEX_ANNOTATIONS, CATEGORY_CLASSES if options.create_classes else FLAG_UNKNOWN_CATEGORIES)
    )
    for start in range(0, images, batch_lines):
        yield _sql_batch(partial(_stage_images, start=start, end=start + batch_lines, has_labels=annotations > 0))
    # The last batch may have created classes (create_classes): they get their ids too.
    yield _sql_batch(_execute(*REMEMBER_CATEGORY_IDS))


def _report_bad_detections(conn: psycopg.Connection, batch: BatchBuffers) -> None:
    with conn.cursor() as cursor:
        for statement in CHECK_DETECTION_CHUNK:
            cursor.execute(statement)
        cursor.execute(
            "SELECT ordinal + 1, field, problem FROM coco_result_chunk WHERE problem IS NOT NULL ORDER BY ordinal"
        )
        batch.errors.extend(LineError(*row) for row in cursor.fetchall())
        cursor.execute(MOVE_DETECTION_CHUNK)


def _group_detections(conn: psycopg.Connection, batch: BatchBuffers, *, batch_lines: int) -> None:
    with conn.cursor() as cursor:
        cursor.execute(GROUP_DETECTIONS, {"batch_lines": batch_lines})
        cursor.execute(INDEX_DETECTIONS)


def _stage_detections(conn: psycopg.Connection, batch: BatchBuffers, *, number: int, model: tuple[str, str]) -> None:
    with conn.cursor() as cursor:
        cursor.execute(FILL_DETECTION_ROWS, {"batch": number})
        batch.line_paths.update((line_no, ()) for (line_no,) in cursor.fetchall())
        cursor.execute(FILL_DETECTION_PREDICTIONS, {"batch": number, "model_name": model[0], "model_version": model[1]})


def coco_results_batches(
    uri: str, writer: RecordWriter, batch_lines: int, options: FormatOptions = FormatOptions()
) -> Iterator[BatchBuffers]:
    """Needs the import's default model (FORMATS_NEEDING_MODEL): a results file names none."""
    with local_copy(uri) as path:
        yield _sql_batch(_execute(CREATE_RESULT_TABLES))
        detections, error = yield from _load(
            path,
            "item",
            "coco_result_chunk",
            DETECTION_COLUMNS,
            _detection_line,
            batch_lines,
            check=_report_bad_detections,
        )
    if error or not detections:
        no_detections = LineError(
            0,
            "(file)",
            "has no detections: a COCO results file is a JSON array of {image_id, category_id, bbox, score}",
        )
        yield BatchBuffers(errors=[error or no_detections])
        return
    yield _sql_batch(partial(_group_detections, batch_lines=batch_lines))
    for number in range(-(-detections // batch_lines)):
        yield _sql_batch(partial(_stage_detections, number=number, model=writer.default_model))
