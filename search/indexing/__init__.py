"""The search indexing hand-off: every writer of datarows, labels, predictions, tags or slice members calls one of
these once its change is made; the call takes effect when the surrounding transaction commits (at once outside
one). On the PostgreSQL engine they return at once without reading their arguments (it reads the tables
themselves); on Elasticsearch they enqueue bulk indexing tasks (search/tasks.py)."""

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import transaction

from mlops.db_routing import WRITER


def _indexing() -> bool:
    return settings.SEARCH_ENGINE == "elasticsearch"


def _after_commit(enqueue) -> None:
    transaction.on_commit(enqueue, using=WRITER)


def datarows_changed(*, project_id: int, datarow_ids: Iterable[int]) -> None:
    """Index the datarows again (tags, labels, predictions, slice membership changed); ids that are no longer the
    project's datarows are removed from the index."""
    if not _indexing():
        return
    from search.tasks import index_datarows

    ids, size = sorted(set(datarow_ids)), settings.SEARCH_INDEX_BATCH
    batches = [ids[start : start + size] for start in range(0, len(ids), size)]
    _after_commit(lambda: [index_datarows.delay(project_id=project_id, datarow_ids=batch) for batch in batches])


def datarows_deleted(*, project_id: int, datarow_ids: Iterable[int]) -> None:
    """Remove deleted datarows from the index (the same task: it indexes what still exists and deletes the rest)."""
    datarows_changed(project_id=project_id, datarow_ids=datarow_ids)


def dataset_changed(*, project_id: int, dataset_id: int, since: datetime | None = None) -> None:
    """Index the dataset's datarows updated at or after `since` (all of them without it), e.g. after an import."""
    if not _indexing():
        return
    from search.tasks import index_dataset

    _after_commit(
        lambda: index_dataset.delay(
            project_id=project_id, dataset_id=dataset_id, since=since.isoformat() if since is not None else None
        )
    )


def slice_members_changed(*, project_id: int, slice_id: int) -> None:
    """Index a stored slice's members again once they are written (their documents' `slice_ids`). Removed members
    need nothing: a deleted slice's id is never reused, so a stale id in `slice_ids` matches no query."""
    if not _indexing():
        return
    from search.tasks import index_slice_members

    _after_commit(lambda: index_slice_members.delay(project_id=project_id, slice_id=slice_id))


def dataset_deleted(*, project_id: int, dataset_id: int) -> None:
    """Remove every document of a deleted dataset (one delete-by-query, not its ids)."""
    if not _indexing():
        return
    from search.tasks import delete_dataset_documents

    _after_commit(lambda: delete_dataset_documents.delay(project_id=project_id, dataset_id=dataset_id))
