"""Read datarows for indexing, set-based: one statement per batch gives each datarow with its labels, predictions,
slice memberships and evaluation matches, in the reference evaluator's dict shape (tests/search/reference.py, plus
"slice_ids")."""

from collections.abc import Iterator

import orjson
from django.db import connections

from mlops import tables

_OBJECT = "'kind', o.kind, 'x', o.x, 'y', o.y, 'w', o.w, 'h', o.h, 'area', o.area, 'attributes', o.attributes"
_COLUMNS = (
    "id",
    "dataset_id",
    "external_id",
    "uri",
    "width",
    "height",
    "created_at",
    "updated_at",
    "metadata",
    "tags",
    "labels",
    "predictions",
    "slice_ids",
    "evaluation_matches",
)


def _datarows_sql(condition: str) -> str:
    # Built when read: the table names come from the models (mlops.tables).
    return f"""
        SELECT d.id, d.dataset_id, d.external_id, d.uri, d.width, d.height, d.created_at, d.updated_at, d.metadata,
            d.tags,
            coalesce((SELECT jsonb_agg(jsonb_build_object('class', c.name, {_OBJECT}) ORDER BY o.id)
                      FROM {tables.LABEL} AS o JOIN {tables.ONTOLOGY_CLASS} AS c ON c.id = o.ontology_class_id
                      WHERE o.datarow_id = d.id), '[]'),
            coalesce((SELECT jsonb_agg(jsonb_build_object('class', c.name, {_OBJECT}, 'score', o.score,
                                                          'model', m.name || '@' || m.version) ORDER BY o.id)
                      FROM {tables.PREDICTION} AS o JOIN {tables.ONTOLOGY_CLASS} AS c ON c.id = o.ontology_class_id
                      JOIN {tables.MODEL_VERSION} AS m ON m.id = o.model_version_id
                      WHERE o.datarow_id = d.id), '[]'),
            ARRAY(SELECT m.slice_id FROM {tables.SLICE_MEMBER} AS m WHERE m.datarow_id = d.id ORDER BY m.slice_id),
            coalesce((SELECT jsonb_agg(jsonb_build_object('run', e.run_id, 'side', e.side, 'outcome', e.outcome,
                                                          'class', c.name, 'predicted_class', p.name, 'iou', e.iou,
                                                          'score', e.score) ORDER BY e.id)
                      FROM {tables.OBJECT_MATCH} AS e JOIN {tables.ONTOLOGY_CLASS} AS c ON c.id = e.ontology_class_id
                      LEFT JOIN {tables.ONTOLOGY_CLASS} AS p ON p.id = e.predicted_class_id
                      WHERE e.datarow_id = d.id), '[]')
        FROM {tables.DATAROW} AS d JOIN {tables.DATASET} AS s ON s.id = d.dataset_id
        WHERE s.project_id = %s AND {condition} ORDER BY d.id"""


def _decode(values: tuple) -> dict:
    # Django hands jsonb back as text.
    row = dict(zip(_COLUMNS, values, strict=True))
    for name in ("metadata", "labels", "predictions", "evaluation_matches"):
        if isinstance(row[name], str):
            row[name] = orjson.loads(row[name])
    return row


def existing_datarow_ids(*, datarow_ids: list[int], using: str) -> set[int]:
    """The ids among `datarow_ids` whose datarows still exist."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT id FROM {tables.DATAROW} WHERE id = ANY(%s)", [list(datarow_ids)])
        return {row_id for (row_id,) in cursor.fetchall()}


def datarows_by_id(*, project_id: int, datarow_ids: list[int], using: str) -> list[dict]:
    """The project's datarows among the ids (the others are not the project's, or are gone)."""
    with connections[using].cursor() as cursor:
        cursor.execute(_datarows_sql("d.id = ANY(%s)"), [project_id, list(datarow_ids)])
        return [_decode(values) for values in cursor.fetchall()]


def datarow_batches(
    *,
    project_id: int,
    using: str,
    dataset_id: int | None = None,
    since=None,
    slice_id: int | None = None,
    batch_size: int = 1000,
) -> Iterator[list[dict]]:
    """The project's (or one dataset's, or one stored slice's) datarows, updated at or after `since` if given, in
    id-keyset batches."""
    after = 0
    while True:
        condition, params = "d.id > %s", [after]
        if dataset_id is not None:
            condition, params = condition + " AND d.dataset_id = %s", [*params, dataset_id]
        if since is not None:
            condition, params = condition + " AND d.updated_at >= %s", [*params, since]
        if slice_id is not None:
            condition, params = (
                condition + f" AND EXISTS (SELECT 1 FROM {tables.SLICE_MEMBER} AS m "
                "WHERE m.slice_id = %s AND m.datarow_id = d.id)",
                [*params, slice_id],
            )
        with connections[using].cursor() as cursor:
            cursor.execute(_datarows_sql(condition) + " LIMIT %s", [project_id, *params, batch_size])
            batch = [_decode(values) for values in cursor.fetchall()]
        if not batch:
            return
        yield batch
        after = batch[-1]["id"]
