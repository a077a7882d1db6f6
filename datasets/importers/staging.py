"""Set-based merge of one staged batch into a dataset: every check and join is SQL over temp tables.

The import runs on a connection of its own (not Django's), so job progress written on Django's
connection is committed and streamed while the import's transaction is still open. Temp tables live in
that session only: a worker killed mid-import leaves nothing behind, and PostgreSQL rolls back what the
session had not committed.
"""

from dataclasses import dataclass, field

import psycopg
from django.db import connections

from datasets.importers.records import BatchBuffers, LineError
from datasets.models import ObjectAttribute
from mlops.bulk_writes import skip_row_by_row_foreign_key_checks
from mlops.db_routing import WRITER

ROW_COLUMNS = "line_no, external_id, uri, media_type, width, height, metadata, tags, has_labels, has_predictions"
LABEL_COLUMNS = "line_no, item_no, external_id, class_name, kind, x, y, w, h, area, polygon, attributes"
PREDICTION_COLUMNS = (
    "line_no, item_no, external_id, model_name, model_version, score, class_name, kind, "
    "x, y, w, h, area, polygon, attributes"
)

CREATE_STAGING = """
CREATE TEMP TABLE import_rows (line_no bigint, external_id text, uri text, media_type text, width int, height int,
                               metadata jsonb, tags text[], has_labels bool, has_predictions bool);
CREATE TEMP TABLE import_labels (line_no bigint, item_no int, external_id text, class_name text, kind text,
                                 x float8, y float8, w float8, h float8, area float8, polygon jsonb, attributes jsonb);
CREATE TEMP TABLE import_predictions (line_no bigint, item_no int, external_id text, model_name text,
                                      model_version text, class_name text, kind text, score float8, x float8,
                                      y float8, w float8, h float8, area float8, polygon jsonb, attributes jsonb);
CREATE TEMP TABLE import_seen (external_id text PRIMARY KEY, line_no bigint);
CREATE TEMP TABLE import_ids (datarow_id bigint, external_id text, inserted bool);
CREATE TEMP TABLE import_classes (name text);
"""
DROP_STAGING = (
    "DROP TABLE IF EXISTS import_rows, import_labels, import_predictions, import_seen, import_ids, import_classes"
)
TRUNCATE_STAGING = "TRUNCATE import_rows, import_labels, import_predictions, import_ids, import_classes"

# The batch's top-level label attributes whose values (nulls aside) are all booleans, all numbers or all strings
# (an enum, up to MAX_ENUM_VALUES of them) join the project's attribute catalog (datasets.models.ObjectAttribute);
# an enum already there gains the new values while it stays within the bound. A name seen with another type keeps
# its entry: the catalog only picks which conditions the typed indexes answer, never what matches. In name order,
# so that imports into one project lock catalog rows in the same order.
MAX_ENUM_VALUES = ObjectAttribute.MAX_ENUM_VALUES
OBJECT_ATTRIBUTES_LEARN = """
INSERT INTO datasets_objectattribute AS a (project_id, name, value_type, enum_values, declared, updated_at)
SELECT %(project)s, key, CASE min(jsonb_typeof(value)) WHEN 'string' THEN 'enum' ELSE min(jsonb_typeof(value)) END,
       coalesce(array_agg(DISTINCT value #>> '{}' ORDER BY value #>> '{}') FILTER (WHERE jsonb_typeof(value) = 'string'), '{}'),
       false, now()
FROM import_labels, jsonb_each(CASE jsonb_typeof(attributes) WHEN 'object' THEN attributes END) AS e(key, value)
WHERE jsonb_typeof(value) <> 'null' AND length(key) <= 200
GROUP BY key
HAVING count(DISTINCT jsonb_typeof(value)) = 1 AND min(jsonb_typeof(value)) IN ('boolean', 'number', 'string')
   AND count(DISTINCT value) FILTER (WHERE jsonb_typeof(value) = 'string') <= %(most)s
ORDER BY key
ON CONFLICT (project_id, name) DO UPDATE
SET enum_values = ARRAY(SELECT DISTINCT v FROM unnest(a.enum_values || EXCLUDED.enum_values) AS v ORDER BY v),
    updated_at = now()
WHERE a.value_type = 'enum' AND EXCLUDED.value_type = 'enum'
  AND (SELECT count(DISTINCT v) FROM unnest(a.enum_values || EXCLUDED.enum_values) AS v) <= %(most)s
"""


@dataclass
class MergeOptions:
    dataset_id: int
    project_id: int
    mode: str  # upsert | skip_existing | fail_on_existing
    create_classes: bool
    source: str
    user: str


@dataclass
class BatchResult:
    errors: list[LineError] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    labels_added: int = 0
    labels_removed: int = 0
    predictions_added: int = 0
    predictions_removed: int = 0
    datarow_ids: list[int] = field(default_factory=list)
    inserted_lines: list[int] = field(default_factory=list)
    merged: bool = False


def open_import_connection() -> psycopg.Connection:
    """A writer connection on the current tenant's schema, with the staging tables created."""
    django_connection = connections[WRITER]
    conn = psycopg.connect(**django_connection.get_connection_params())
    # The merge guarantees references set-based: every label and prediction joins the datarows just upserted and
    # the classes and model versions locked by _lock_referenced_rows.
    skip_row_by_row_foreign_key_checks(conn)
    with conn.cursor() as cursor:
        cursor.execute("SELECT set_config('search_path', %s, false)", [f"{django_connection.schema_name},public"])
        cursor.execute(CREATE_STAGING)
    conn.commit()
    return conn


def stage_target(conn: psycopg.Connection, *, dataset_id: int, project_id: int) -> None:
    """Name the import's dataset and project in the session (`import_target`), for formats whose SQL resolves
    references against them (COCO results find their datarows and classes)."""
    with conn.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE import_target (dataset_id bigint, project_id bigint)")
        cursor.execute("INSERT INTO import_target VALUES (%s, %s)", [dataset_id, project_id])


def copy_into(conn: psycopg.Connection, table: str, columns: str, lines: list[str]) -> None:
    if not lines:
        return
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        copy.write("".join(lines))


def _reject(cursor, result: BatchResult, rows, message) -> None:
    """Record errors for (line_no, field, ...) rows and drop those lines from every staging table."""
    lines = []
    for row in rows:
        result.errors.append(LineError(row[0], row[1], message(row)))
        lines.append(row[0])
    if lines:
        for table in ("import_rows", "import_labels", "import_predictions"):
            cursor.execute(f"DELETE FROM {table} WHERE line_no = ANY(%s)", [lines])


def stage_batch(conn: psycopg.Connection, batch: BatchBuffers) -> None:
    if batch.stage_sql is not None:
        batch.stage_sql(conn)
    copy_into(conn, "import_rows", ROW_COLUMNS, batch.rows)
    copy_into(conn, "import_labels", LABEL_COLUMNS, batch.labels)
    copy_into(conn, "import_predictions", PREDICTION_COLUMNS, batch.predictions)


def truncate_staging(conn: psycopg.Connection) -> None:
    with conn.cursor() as cursor:
        cursor.execute(TRUNCATE_STAGING)


def check_batch(conn: psycopg.Connection, options: MergeOptions) -> BatchResult:
    """Duplicates, unknown classes and existing ids, found in SQL; bad lines are dropped from staging."""
    result = BatchResult()
    with conn.cursor() as cursor:
        cursor.execute("""
            SELECT r.line_no, 'external_id', r.external_id, coalesce(s.line_no, r.first_line)
            FROM (SELECT line_no, external_id, min(line_no) OVER (PARTITION BY external_id) AS first_line
                  FROM import_rows) r
            LEFT JOIN import_seen s USING (external_id)
            WHERE s.line_no IS NOT NULL OR r.line_no <> r.first_line
            ORDER BY r.line_no""")
        _reject(
            cursor,
            result,
            cursor.fetchall(),
            lambda row: f"duplicate external_id '{row[2]}' (first seen on line {row[3]})",
        )
        cursor.execute("INSERT INTO import_seen SELECT external_id, line_no FROM import_rows")
        # Each class path of the batch and its ancestors (`vehicle`, `vehicle/car` for `vehicle/car/sedan`),
        # once: classes are created from it and locked by it (see _lock_referenced_rows).
        cursor.execute(
            class_paths_sql("SELECT class_name FROM import_labels UNION SELECT class_name FROM import_predictions")
        )

        if options.create_classes:
            _create_missing_classes(cursor, options.project_id)
        else:
            cursor.execute(
                """
                SELECT DISTINCT ON (u.line_no) u.line_no, u.field, u.class_name FROM (
                    SELECT line_no, format('labels[%%s].class', item_no) AS field, class_name FROM import_labels
                    UNION ALL
                    SELECT line_no, format('predictions[%%s].class', item_no), class_name FROM import_predictions
                ) u
                LEFT JOIN datasets_ontologyclass o ON o.project_id = %s AND o.name = u.class_name
                WHERE o.id IS NULL
                ORDER BY u.line_no, u.field""",
                [options.project_id],
            )
            _reject(cursor, result, cursor.fetchall(), lambda row: f"class '{row[2]}' is not in the project's ontology")

        if options.mode != "upsert":
            cursor.execute(
                """
                SELECT r.line_no, 'external_id', r.external_id FROM import_rows r
                JOIN datasets_datarow d ON d.dataset_id = %s AND d.external_id = r.external_id
                ORDER BY r.line_no""",
                [options.dataset_id],
            )
            existing = cursor.fetchall()
            if options.mode == "fail_on_existing":
                _reject(cursor, result, existing, lambda row: f"external_id '{row[2]}' already exists in the dataset")
            else:
                result.skipped = len(existing)
                for table in ("import_rows", "import_labels", "import_predictions"):
                    cursor.execute(f"DELETE FROM {table} WHERE line_no = ANY(%s)", [[row[0] for row in existing]])
    return result


def class_paths_sql(class_names: str) -> str:
    """SQL adding each class path that the query `class_names` (a `class_name` column) yields, with its ancestors,
    to import_classes: the classes a batch refers to, created with create_classes."""
    return f"""
        INSERT INTO import_classes
        SELECT DISTINCT array_to_string((string_to_array(c.class_name, '/'))[1:depth], '/')
        FROM ({class_names}) c, generate_series(1, array_length(string_to_array(c.class_name, '/'), 1)) AS depth"""


def _create_missing_classes(cursor, project_id: int) -> None:
    cursor.execute(
        """
        INSERT INTO datasets_ontologyclass (project_id, name, created_at)
        SELECT %s, name, now() FROM import_classes
        ON CONFLICT (project_id, name) DO NOTHING""",
        [project_id],
    )
    cursor.execute(
        """
        UPDATE datasets_ontologyclass child SET parent_id = parent.id
        FROM datasets_ontologyclass parent
        WHERE child.project_id = %s AND parent.project_id = %s AND child.parent_id IS NULL
          AND position('/' in child.name) > 0
          AND parent.name = regexp_replace(child.name, '/[^/]*$', '')""",
        [project_id, project_id],
    )


def merge_batch(conn: psycopg.Connection, options: MergeOptions, result: BatchResult) -> None:
    """Upsert datarows, then replace the labels and predictions of every line that carries them."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO predictions_modelversion (project_id, name, version, created_at)
            SELECT DISTINCT %s, model_name, model_version, now() FROM import_predictions
            ON CONFLICT (project_id, name, version) DO NOTHING""",
            [options.project_id],
        )
        _lock_referenced_rows(cursor, options.project_id)
        cursor.execute(
            """
            WITH upserted AS (
                INSERT INTO datasets_datarow (dataset_id, external_id, uri, media_type, width, height, metadata, tags,
                                              created_at, updated_at)
                SELECT %s, external_id, uri, media_type, width, height, metadata, tags, now(), now() FROM import_rows
                ON CONFLICT (dataset_id, external_id) DO UPDATE SET
                    uri = EXCLUDED.uri, media_type = EXCLUDED.media_type, width = EXCLUDED.width,
                    height = EXCLUDED.height, metadata = EXCLUDED.metadata, tags = EXCLUDED.tags,
                    updated_at = EXCLUDED.updated_at
                RETURNING id, external_id, (xmax = 0) AS inserted)
            INSERT INTO import_ids SELECT id, external_id, inserted FROM upserted""",
            [options.dataset_id],
        )
        cursor.execute("SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM import_ids")
        result.inserted, result.updated = cursor.fetchone()

        cursor.execute("""
            DELETE FROM datasets_label l USING import_ids i JOIN import_rows r USING (external_id)
            WHERE l.datarow_id = i.datarow_id AND NOT i.inserted AND r.has_labels""")
        result.labels_removed = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO datasets_label (datarow_id, ontology_class_id, kind, x, y, w, h, area, polygon, attributes,
                                        source, created_at, updated_at, updated_by)
            SELECT i.datarow_id, o.id, l.kind, l.x, l.y, l.w, l.h, l.area, l.polygon, l.attributes, %s, now(), now(), %s
            FROM import_labels l
            JOIN import_ids i USING (external_id)
            JOIN datasets_ontologyclass o ON o.project_id = %s AND o.name = l.class_name""",
            [options.source, options.user, options.project_id],
        )
        result.labels_added = cursor.rowcount
        if result.labels_added:
            cursor.execute(OBJECT_ATTRIBUTES_LEARN, {"project": options.project_id, "most": MAX_ENUM_VALUES})

        cursor.execute(
            """
            DELETE FROM predictions_prediction p
            USING import_ids i, predictions_modelversion m,
                  (SELECT DISTINCT external_id, model_name, model_version FROM import_predictions) s
            WHERE NOT i.inserted AND i.external_id = s.external_id AND p.datarow_id = i.datarow_id
              AND m.project_id = %s AND m.name = s.model_name AND m.version = s.model_version
              AND p.model_version_id = m.id""",
            [options.project_id],
        )
        result.predictions_removed = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO predictions_prediction (datarow_id, model_version_id, ontology_class_id, kind, score,
                                                x, y, w, h, area, polygon, attributes, created_at)
            SELECT i.datarow_id, m.id, o.id, p.kind, p.score, p.x, p.y, p.w, p.h, p.area, p.polygon, p.attributes, now()
            FROM import_predictions p
            JOIN import_ids i USING (external_id)
            JOIN predictions_modelversion m ON m.project_id = %s AND m.name = p.model_name AND m.version = p.model_version
            JOIN datasets_ontologyclass o ON o.project_id = %s AND o.name = p.class_name""",
            [options.project_id, options.project_id],
        )
        result.predictions_added = cursor.rowcount

        cursor.execute(
            """
            UPDATE datasets_dataset SET datarow_count = datarow_count + %s, label_count = label_count + %s,
                   prediction_count = prediction_count + %s, updated_at = now()
            WHERE id = %s""",
            [
                result.inserted,
                result.labels_added - result.labels_removed,
                result.predictions_added - result.predictions_removed,
                options.dataset_id,
            ],
        )
        cursor.execute("SELECT r.line_no FROM import_ids i JOIN import_rows r USING (external_id) WHERE i.inserted")
        result.inserted_lines = [line_no for (line_no,) in cursor.fetchall()]


def _lock_referenced_rows(cursor, project_id: int) -> None:
    """What foreign key triggers would lock: the classes (with their ancestors, which new classes point to)
    and model versions the batch refers to, FOR KEY SHARE until commit, so that a concurrent delete waits
    for the import instead of leaving labels or predictions pointing at nothing. The datarows they refer to
    are locked by the upsert, the dataset row by the count update and the dataset's advisory lock."""
    cursor.execute(
        """
        SELECT 1 FROM datasets_ontologyclass WHERE project_id = %s AND name IN (SELECT name FROM import_classes)
        ORDER BY id FOR KEY SHARE""",
        [project_id],
    )
    cursor.execute(
        """
        SELECT 1 FROM predictions_modelversion
        WHERE project_id = %s AND (name, version) IN (SELECT model_name, model_version FROM import_predictions)
        ORDER BY id FOR KEY SHARE""",
        [project_id],
    )
