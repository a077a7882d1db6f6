"""Search's own job tasks (thin: they call search.services). The indexing tasks are in search/indexing/tasks.py."""

from jobs.models import Job
from jobs.runner import job_task
from jobs.services import job_report_progress
from search.services import SEARCH_BULK_ACTION_JOB_KIND, BulkActionCounters, search_bulk_action_run


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
