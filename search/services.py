"""Search writes: bulk actions by query (tag, untag or delete every datarow that matches, as a job) and the full
Elasticsearch reindex.

Bulk actions walk the matches in id order, one batch of ids at a time (a keyset on the primary key, so each batch
is an id range), and each batch is written by the datasets app's own bulk services (one set-based statement per
dataset in the batch), which keep tags sorted, the datasets' counts exact and hand the change to the indexer. A
cancel is seen between batches. They read PostgreSQL whatever the search engine: it holds the rows.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper

from datasets.models import Dataset
from datasets.selectors import dataset_get
from datasets.services.datarows import datarow_bulk_delete, datarow_tags_update
from jobs.models import Job
from jobs.services import job_create
from mlops import tables
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError, Conflict, referenced_by
from projects.models import Project
from search.engines.postgres_compiler import compile_filter
from search.engines.postgres_sql import CompiledQuery
from search.queries import project_query_validate
from tenancy.principal import Principal

SEARCH_REINDEX_JOB_KIND = "search-reindex"
SEARCH_BULK_ACTION_JOB_KIND = "search-bulk-action"
BULK_ACTIONS = ("tag", "untag", "delete")
BULK_BATCH_ROWS = 5_000


@dataclass
class BulkActionCounters:
    matched: int = 0  # when the job started
    done: int = 0  # datarows changed or deleted so far
    labels: int = 0  # deleted with their datarows
    predictions: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _check_tags(action: str, tags: list[str]) -> None:
    if action == "delete" and tags:
        raise ApplicationError("A delete takes no tags.", {"fields": {"tags": ["Leave out tags to delete."]}})
    if action != "delete" and not tags:
        raise ApplicationError(f"Give the tags to {action}.", {"fields": {"tags": [f"At least one tag to {action}."]}})


def search_bulk_action_start(
    *,
    principal: Principal,
    project: Project,
    query_text: str,
    action: str,
    tags: list[str],
    dataset_id: int | None = None,
) -> Job:
    """Check the query, the action and the dataset now (a 400/404 for the caller), then queue the job."""
    if action not in BULK_ACTIONS:
        raise ApplicationError(f"Unknown action {action!r}.", {"fields": {"action": [f"One of {BULK_ACTIONS}."]}})
    _check_tags(action, tags)
    if dataset_id is not None:
        with referenced_by("dataset"):
            dataset_get(project=project, dataset_id=dataset_id)
    project_query_validate(project_id=project.pk, query_text=query_text, using=WRITER)
    return job_create(
        principal=principal,
        kind=SEARCH_BULK_ACTION_JOB_KIND,
        params={
            "project_id": project.pk,
            "query": query_text,
            "action": action,
            "tags": tags,
            "dataset_id": dataset_id,
        },
    )


def _matching_batch(cursor: CursorWrapper, condition: CompiledQuery, after_id: int) -> list[tuple[int, int]]:
    cursor.execute(
        f"SELECT d.id, d.dataset_id FROM {tables.DATAROW} AS d WHERE {condition.sql} AND d.id > %s "
        f"ORDER BY d.id LIMIT %s",
        [*condition.params, after_id, BULK_BATCH_ROWS],
    )
    return cursor.fetchall()


def search_bulk_action_run(
    *,
    project_id: int,
    query_text: str,
    action: str,
    tags: list[str],
    dataset_id: int | None,
    progress: Callable[[BulkActionCounters], None],
) -> BulkActionCounters:
    """Apply `action` to every datarow of the project (or dataset) matching the query; `progress` after each batch
    (it may raise to stop: the batches written so far stay written)."""
    _check_tags(action, tags)
    query = project_query_validate(project_id=project_id, query_text=query_text, using=WRITER)
    condition = compile_filter(query, project_id=project_id, dataset_id=dataset_id, using=WRITER)
    counters = BulkActionCounters()
    # On the writer: the next batch must see this job's own writes, which the replica may not have replayed yet.
    with connections[WRITER].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {tables.DATAROW} AS d WHERE {condition.sql}", condition.params)
        counters.matched = cursor.fetchone()[0]
        progress(counters)
        after_id = 0
        while batch := _matching_batch(cursor, condition, after_id):
            after_id = batch[-1][0]
            by_dataset: dict[int, list[int]] = defaultdict(list)
            for datarow_id, row_dataset_id in batch:
                by_dataset[row_dataset_id].append(datarow_id)
            for dataset in Dataset.objects.using(WRITER).filter(pk__in=by_dataset):
                ids = by_dataset[dataset.pk]
                if action == "delete":
                    deleted = datarow_bulk_delete(dataset=dataset, datarow_ids=ids)
                    counters.done += deleted.datarows
                    counters.labels += deleted.labels
                    counters.predictions += deleted.predictions
                else:
                    add, remove = (tags, []) if action == "tag" else ([], tags)
                    counters.done += datarow_tags_update(
                        dataset=dataset, datarow_ids=ids, add=add, remove=remove
                    ).updated
            progress(counters)
    return counters


def search_reindex_start(*, principal: Principal, project: Project) -> Job:
    """Queue a full reindex of the project (Elasticsearch only): a new index, filled, then swapped in."""
    if settings.SEARCH_ENGINE != "elasticsearch":
        raise ApplicationError("Nothing to reindex: the PostgreSQL search engine reads the tables themselves.")
    with transaction.atomic():
        # One reindex per project at a time: two would each swap in their own index.
        running = (
            Job.objects.select_for_update()
            .filter(
                kind=SEARCH_REINDEX_JOB_KIND,
                params__project_id=project.pk,
                status__in=[Job.Status.QUEUED, Job.Status.RUNNING],
            )
            .first()
        )
        if running is not None:
            raise Conflict(
                f"Project {project.pk} is already being reindexed by job {running.pk}.", {"job_id": str(running.pk)}
            )
        return job_create(principal=principal, kind=SEARCH_REINDEX_JOB_KIND, params={"project_id": project.pk})
