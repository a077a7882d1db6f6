"""Search tasks (thin: they call the services). Indexing tasks retry with exponential backoff while Elasticsearch
cannot be reached or answers 429 / 5xx; the full reindex and bulk actions by query are Jobs with progress."""

from celery import shared_task
from elastic_transport import TransportError

from jobs.models import Job
from jobs.runner import job_task
from jobs.services import job_report_progress
from mlops.celery import TenantTask
from mlops.db_routing import WRITER
from search.indexing import services
from search.ql.validation import parse_datetime
from search.services import (
    SEARCH_BULK_ACTION_JOB_KIND,
    SEARCH_REINDEX_JOB_KIND,
    BulkActionCounters,
    search_bulk_action_run,
)

_RETRY = {
    "base": TenantTask,
    "autoretry_for": (TransportError, services.SearchIndexUnavailable),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
}


def _schema() -> str:
    from django.db import connections

    return connections[WRITER].schema_name


@shared_task(name="search.tasks.index_datarows", **_RETRY)
def index_datarows(*, project_id: int, datarow_ids: list[int]) -> dict:
    # Reads from the writer: the change was just committed there, the reader may lag.
    return services.index_datarows(
        tenant_schema=_schema(), project_id=project_id, datarow_ids=datarow_ids, using=WRITER
    )


@shared_task(name="search.tasks.index_dataset", **_RETRY)
def index_dataset(*, project_id: int, dataset_id: int, since: str | None = None) -> int:
    return services.index_dataset(
        tenant_schema=_schema(),
        project_id=project_id,
        dataset_id=dataset_id,
        since=parse_datetime(since) if since else None,
        using=WRITER,
    )


@shared_task(name="search.tasks.index_slice_members", **_RETRY)
def index_slice_members(*, project_id: int, slice_id: int) -> int:
    return services.index_slice_members(tenant_schema=_schema(), project_id=project_id, slice_id=slice_id, using=WRITER)


@shared_task(name="search.tasks.delete_dataset_documents", **_RETRY)
def delete_dataset_documents(*, project_id: int, dataset_id: int) -> int:
    return services.delete_dataset_documents(tenant_schema=_schema(), project_id=project_id, dataset_id=dataset_id)


@job_task(kind=SEARCH_REINDEX_JOB_KIND)
def search_reindex(job: Job, *, project_id: int) -> None:
    def progress(indexed: int) -> None:
        job_report_progress(
            job=job,
            done=indexed,
            counters={"indexed": indexed},
            message=f"{indexed} datarows indexed into the new index",
        )

    result = services.reindex_project(tenant_schema=_schema(), project_id=project_id, using=WRITER, progress=progress)
    job_report_progress(
        job=job,
        done=result["indexed"],
        total=result["indexed"],
        counters={"indexed": result["indexed"], "index": result["index"]},
        message=f"{result['indexed']} datarows indexed; the search alias now uses {result['index']}",
    )


@job_task(kind=SEARCH_BULK_ACTION_JOB_KIND)
def search_bulk_action(
    job: Job, *, project_id: int, query: str, action: str, tags: list[str], dataset_id: int | None
) -> None:
    def progress(counters: BulkActionCounters) -> None:
        job_report_progress(
            job=job,
            done=counters.done,
            total=counters.matched,
            counters=counters.as_dict(),
            message=f"{action}: {counters.done} of {counters.matched} datarows",
        )

    search_bulk_action_run(
        project_id=project_id, query_text=query, action=action, tags=tags, dataset_id=dataset_id, progress=progress
    )
