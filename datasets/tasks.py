from datasets.exporters.batches import ExportCounters
from datasets.importers.records import LineError
from datasets.job_kinds import (
    DATASET_DELETE_JOB_KIND,
    DATASET_EXPORT_JOB_KIND,
    DATASET_IMPORT_JOB_KIND,
)
from datasets.models import Dataset
from datasets.selectors import datarow_list
from datasets.services.datasets import dataset_delete_rows
from datasets.services.exports import datarows_export
from datasets.services.imports import (
    ERRORS_KEPT_ON_JOB,
    ImportAborted,
    ImportCounters,
    ImportFailed,
    ImportOptions,
    dataset_import_run,
)
from datasets.signals import dataset_changed
from jobs.models import Job
from jobs.runner import job_task
from jobs.services import job_report_progress
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError
from mlops.metrics import ImportMeter


@job_task(kind=DATASET_IMPORT_JOB_KIND)
def dataset_import(job: Job, *, dataset_id: int, uri: str, options: dict) -> None:
    dataset = Dataset.objects.using(WRITER).get(pk=dataset_id)
    first_errors: list[dict] = []
    meter = ImportMeter(ImportOptions(**options).format)

    def progress(counters: ImportCounters, errors: list[LineError]) -> None:
        meter.lines_read(counters.lines)
        first_errors.extend(e.as_dict() for e in errors[: ERRORS_KEPT_ON_JOB - len(first_errors)])
        job_report_progress(
            job=job,
            done=counters.lines,
            counters={**counters.as_dict(), "first_errors": first_errors},
            message=f"{counters.lines} lines read, {counters.committed_rows} datarows committed",
        )

    try:
        counters = dataset_import_run(
            dataset=dataset,
            uri=uri,
            options=ImportOptions(**options),
            source=f"import:{job.pk}",
            user=job.owner_id,
            progress=progress,
        )
    except ImportAborted as aborted:
        # Keep the reasons on the job (the runner then records it failed with the message).
        job.counters = {**job.counters, "first_errors": aborted.extra["errors"], "errors": aborted.extra["error_count"]}
        raise
    meter.finished()
    if counters.every_line_failed:
        # Failed, not succeeded with nothing: the runner records the error; the counters stay on the job.
        job.counters = {**job.counters, **counters.as_dict(), "first_errors": first_errors}
        raise ImportFailed.of(counters, first_errors[0])
    message = f"{counters.lines} lines read, {counters.committed_rows} datarows committed"
    if counters.partial:
        message += f", {counters.error_lines} lines left out for errors (first_errors, and the error report)"
    job_report_progress(
        job=job,
        done=counters.lines,
        total=counters.lines,
        message=message,
        counters={**counters.as_dict(), "first_errors": first_errors},
    )
    # Upserted rows get updated_at = now() inside the import, after the job started; a predictions-only import
    # (COCO results) leaves its datarows' updated_at alone, so the whole dataset is indexed again.
    since = None if options.get("format") == "coco_results" else job.started_at
    dataset_changed.send(sender=None, project_id=dataset.project_id, dataset_id=dataset.pk, since=since)


@job_task(kind=DATASET_DELETE_JOB_KIND)
def dataset_delete(job: Job, *, dataset_id: int) -> None:
    dataset_delete_rows(
        dataset_id=dataset_id,
        progress=lambda deleted: job_report_progress(job=job, done=deleted, counters={"deleted": deleted}),
    )


@job_task(kind=DATASET_EXPORT_JOB_KIND)
def dataset_export(job: Job, *, dataset_id: int, export_format: str) -> None:
    dataset = Dataset.objects.using(WRITER).get(pk=dataset_id)
    if dataset.status == Dataset.Status.DELETING:
        raise ApplicationError(f"Dataset {dataset_id} is being deleted; there is nothing to export.")

    def progress(counters: ExportCounters) -> None:
        job_report_progress(
            job=job,
            done=counters.datarows,
            total=dataset.datarow_count,
            counters=counters.as_dict(),
            message=f"{counters.datarows} of {dataset.datarow_count} datarows written",
        )

    counters = datarows_export(
        datarows=datarow_list(dataset=dataset),
        project_id=dataset.project_id,
        export_format=export_format,
        job_id=job.pk,
        progress=progress,
    )
    job_report_progress(
        job=job,
        done=counters.datarows,
        total=counters.datarows,
        counters=counters.as_dict(),
        message=f"{counters.datarows} datarows exported",
    )
