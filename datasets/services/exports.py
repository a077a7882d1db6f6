"""Exports: a job writes the datarows to a file in the tenant's storage, batch by batch, and reports progress."""

import os
from collections.abc import Callable, Iterator
from uuid import UUID

from django.db.models import QuerySet

from datasets.exporters.batches import Category, ExportBatch, ExportCounters, export_batches
from datasets.exporters.formats import EXPORT_FORMATS, export_path
from datasets.exporters.snapshot import snapshot_reads
from datasets.job_kinds import DATASET_EXPORT_JOB_KIND
from datasets.models import DataRow, Dataset, OntologyClass
from jobs.models import Job
from jobs.services import job_create
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError
from tenancy.principal import Principal


def dataset_export_start(*, principal: Principal, dataset: Dataset, export_format: str) -> Job:
    if export_format not in EXPORT_FORMATS:
        raise ApplicationError(
            f"Unknown export format '{export_format}'.",
            {"fields": {"format": [f"Must be one of {', '.join(EXPORT_FORMATS)}."]}},
        )
    return job_create(
        principal=principal,
        kind=DATASET_EXPORT_JOB_KIND,
        params={"dataset_id": dataset.pk, "export_format": export_format},
    )


def _categories(project_id: int) -> list[Category]:
    return [
        Category(id=class_id, name=name, parent_name=parent_name)
        for class_id, name, parent_name in OntologyClass.objects.using(WRITER)
        .filter(project_id=project_id)
        .order_by("id")
        .values_list("id", "name", "parent__name")
    ]


def _snapshot_contents(datarows: QuerySet[DataRow], project_id: int) -> Iterator[list[Category] | ExportBatch]:
    """What an export reads, in its snapshot: the project's classes first, then the batches."""
    yield _categories(project_id)
    yield from export_batches(datarows)


def _reporting(
    batches: Iterator[ExportBatch], counters: ExportCounters, progress: Callable[[ExportCounters], None]
) -> Iterator[ExportBatch]:
    """The batches, with `progress` called each time the format asks for the next one (it wrote the last)."""
    for batch in batches:
        yield batch
        progress(counters)


def datarows_export(
    *,
    datarows: QuerySet[DataRow],
    project_id: int,
    export_format: str,
    job_id: UUID | str,
    progress: Callable[[ExportCounters], None],
) -> ExportCounters:
    """Write `datarows` (a dataset's, a slice's, an id range: any queryset) to the job's export file, as they were
    when the export began (datasets/exporters/snapshot.py).

    The file appears under its final name only once complete: a failed or cancelled export leaves nothing behind.
    """
    path = export_path(job_id=job_id, export_format=export_format)
    partial = path.with_name(path.name + ".partial")
    counters = ExportCounters()
    try:
        with open(partial, "wb") as out, snapshot_reads(lambda: _snapshot_contents(datarows, project_id)) as contents:
            categories = next(contents)
            EXPORT_FORMATS[export_format].write(out, _reporting(contents, counters, progress), categories, counters)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return counters
