"""Read datarows for indexing, set-based: one statement per batch gives each datarow with its labels, predictions
and slice memberships, in the reference evaluator's dict shape (search/engines/reference.py, plus "slice_ids")."""

from collections.abc import Iterator

import orjson
from django.db import connections

_OBJECT = "'kind', o.kind, 'x', o.x, 'y', o.y, 'w', o.w, 'h', o.h, 'area', o.area, 'attributes', o.attributes"
_DATAROWS = f"""
    SELECT d.id, d.dataset_id, d.external_id, d.uri, d.width, d.height, d.created_at, d.updated_at, d.metadata, d.tags,
        coalesce((SELECT jsonb_agg(jsonb_build_object('class', c.name, {_OBJECT}) ORDER BY o.id)
                  FROM datasets_label AS o JOIN datasets_ontologyclass AS c ON c.id = o.ontology_class_id
                  WHERE o.datarow_id = d.id), '[]'),
        coalesce((SELECT jsonb_agg(jsonb_build_object('class', c.name, {_OBJECT}, 'score', o.score,
                                                      'model', m.name || '@' || m.version) ORDER BY o.id)
                  FROM predictions_prediction AS o JOIN datasets_ontologyclass AS c ON c.id = o.ontology_class_id
                  JOIN predictions_modelversion AS m ON m.id = o.model_version_id
                  WHERE o.datarow_id = d.id), '[]'),
        ARRAY(SELECT m.slice_id FROM slices_slicemember AS m WHERE m.datarow_id = d.id ORDER BY m.slice_id)
    FROM datasets_datarow AS d JOIN datasets_dataset AS s ON s.id = d.dataset_id
    WHERE s.project_id = %s AND {{condition}} ORDER BY d.id"""
_COLUMNS = ("id", "dataset_id", "external_id", "uri", "width", "height", "created_at", "updated_at", "metadata", "tags",
            "labels", "predictions", "slice_ids")


def _decode(values: tuple) -> dict:
    # Django hands jsonb back as text.
    row = dict(zip(_COLUMNS, values, strict=True))
    for name in ("metadata", "labels", "predictions"):
        if isinstance(row[name], str):
            row[name] = orjson.loads(row[name])
    return row


def existing_datarow_ids(*, datarow_ids: list[int], using: str) -> set[int]:
    """The ids among `datarow_ids` whose datarows still exist."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT id FROM datasets_datarow WHERE id = ANY(%s)", [list(datarow_ids)])
        return {row_id for (row_id,) in cursor.fetchall()}


def datarows_by_id(*, project_id: int, datarow_ids: list[int], using: str) -> list[dict]:
    """The project's datarows among the ids (the others are not the project's, or are gone)."""
    with connections[using].cursor() as cursor:
        cursor.execute(_DATAROWS.format(condition="d.id = ANY(%s)"), [project_id, list(datarow_ids)])
        return [_decode(values) for values in cursor.fetchall()]


def datarow_batches(*, project_id: int, using: str, dataset_id: int | None = None, since=None,
                    slice_id: int | None = None, batch_size: int = 1000) -> Iterator[list[dict]]:
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
            condition, params = condition + " AND EXISTS (SELECT 1 FROM slices_slicemember AS m " \
                "WHERE m.slice_id = %s AND m.datarow_id = d.id)", [*params, slice_id]
        with connections[using].cursor() as cursor:
            cursor.execute(_DATAROWS.format(condition=condition) + " LIMIT %s", [project_id, *params, batch_size])
            batch = [_decode(values) for values in cursor.fetchall()]
        if not batch:
            return
        yield batch
        after = batch[-1]["id"]
