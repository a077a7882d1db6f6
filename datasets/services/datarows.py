"""Bulk changes to a dataset's datarows, each one set-based SQL: one statement for the rows, whatever their number.

Ids that are not datarows of the dataset are reported back; the rest is done. Counts on the dataset change in
the same transaction as the rows, so they stay exact.
"""

from dataclasses import dataclass

from django.db import connections, transaction

from datasets.locks import dataset_lock_release, dataset_lock_take
from datasets.models import Dataset
from datasets.signals import datarows_changed, datarows_deleted
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError

MAX_DATAROW_IDS = 10_000


@dataclass(frozen=True)
class DatarowTagsResult:
    updated: int
    not_found_ids: list[int]


@dataclass(frozen=True)
class DatarowDeleteResult:
    datarows: int
    labels: int
    predictions: int
    not_found_ids: list[int]


def datarow_tags_update(
    *, dataset: Dataset, datarow_ids: list[int], add: list[str], remove: list[str]
) -> DatarowTagsResult:
    """Add and remove tags on the datarows in one UPDATE; tags stay unique and sorted by code point, as imports
    store them (COLLATE "C" orders UTF-8 as Python's sorted() does)."""
    if not add and not remove:
        raise ApplicationError(
            "Nothing to change: give tags to add or to remove.",
            {"fields": {"add": ["Give at least one tag to add or to remove."]}},
        )
    both = sorted(set(add) & set(remove))
    if both:
        raise ApplicationError(
            "A tag cannot be both added and removed.", {"fields": {"remove": [f"Also in 'add': {', '.join(both)}."]}}
        )
    with transaction.atomic(using=WRITER), connections[WRITER].cursor() as cursor:
        cursor.execute(
            """
            WITH wanted AS (SELECT DISTINCT unnest(%(ids)s::bigint[]) AS id),
                 changed AS (
                     UPDATE datasets_datarow d
                     SET tags = ARRAY(SELECT DISTINCT tag COLLATE "C" FROM unnest(d.tags || %(add)s::text[]) AS tag
                                      WHERE tag <> ALL(%(remove)s::text[]) ORDER BY 1),
                         updated_at = now()
                     FROM wanted WHERE d.id = wanted.id AND d.dataset_id = %(dataset_id)s
                     RETURNING d.id)
            SELECT count(changed.id), coalesce(array_agg(wanted.id ORDER BY wanted.id)
                                               FILTER (WHERE changed.id IS NULL), '{}')
            FROM wanted LEFT JOIN changed USING (id)""",
            {"ids": datarow_ids, "add": add, "remove": remove, "dataset_id": dataset.pk},
        )
        updated, not_found_ids = cursor.fetchone()
    missing = set(not_found_ids)
    datarows_changed.send(
        sender=None, project_id=dataset.project_id, datarow_ids=(i for i in datarow_ids if i not in missing)
    )
    return DatarowTagsResult(updated=updated, not_found_ids=not_found_ids)


def datarow_bulk_delete(*, dataset: Dataset, datarow_ids: list[int]) -> DatarowDeleteResult:
    """Delete the datarows with their predictions and labels, and take them off the dataset's counts.

    Holds the dataset's import lock (a running import or dataset delete makes this a 409). The rows are locked
    first, so label edits on them (which lock their datarow) finish before, and the delete's next statement
    sees every label they committed.
    """
    with connections[WRITER].cursor() as cursor:
        dataset_lock_take(cursor, dataset.pk)
        try:
            with transaction.atomic(using=WRITER):
                cursor.execute(
                    """
                    SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM (
                        SELECT id FROM datasets_datarow WHERE dataset_id = %s AND id = ANY(%s) ORDER BY id FOR UPDATE
                    ) locked""",
                    [dataset.pk, datarow_ids],
                )
                (found,) = cursor.fetchone()
                cursor.execute(
                    """
                    WITH gone_predictions AS (DELETE FROM predictions_prediction WHERE datarow_id = ANY(%(ids)s)
                                              RETURNING 1),
                         gone_labels AS (DELETE FROM datasets_label WHERE datarow_id = ANY(%(ids)s) RETURNING 1),
                         gone_datarows AS (DELETE FROM datasets_datarow WHERE id = ANY(%(ids)s) RETURNING 1),
                         gone AS (SELECT (SELECT count(*) FROM gone_datarows) AS datarows,
                                         (SELECT count(*) FROM gone_labels) AS labels,
                                         (SELECT count(*) FROM gone_predictions) AS predictions)
                    UPDATE datasets_dataset SET datarow_count = datarow_count - gone.datarows,
                           label_count = label_count - gone.labels,
                           prediction_count = prediction_count - gone.predictions, updated_at = now()
                    FROM gone WHERE datasets_dataset.id = %(dataset_id)s
                    RETURNING gone.datarows, gone.labels, gone.predictions""",
                    {"ids": found, "dataset_id": dataset.pk},
                )
                datarows, labels, predictions = cursor.fetchone()
        finally:
            dataset_lock_release(cursor, dataset.pk)
    datarows_deleted.send(sender=None, project_id=dataset.project_id, datarow_ids=found)
    found_ids = set(found)
    return DatarowDeleteResult(
        datarows=datarows,
        labels=labels,
        predictions=predictions,
        not_found_ids=sorted({i for i in datarow_ids if i not in found_ids}),
    )
