from collections.abc import Callable

from django.db import IntegrityError, connections, transaction

from datasets.job_kinds import DATASET_DELETE_JOB_KIND
from datasets.locks import dataset_lock_release, dataset_lock_take
from datasets.models import Dataset
from datasets.signals import dataset_deleted
from jobs.models import Job
from jobs.services import job_create
from mlops.db_routing import WRITER
from mlops.exceptions import Conflict
from projects.models import Project
from tenancy.principal import Principal

DELETE_BATCH_ROWS = 50_000


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A dataset named '{name}' already exists in this project.",
        {"fields": {"name": ["This name is already taken in this project."]}},
    )


def dataset_create(*, principal: Principal, project: Project, name: str, description: str = "") -> Dataset:
    try:
        with transaction.atomic():
            return Dataset.objects.create(
                project=project, name=name, description=description, created_by=principal.user_id
            )
    except IntegrityError as error:
        raise _name_taken(name) from error


def dataset_update(*, dataset: Dataset, name: str | None = None, description: str | None = None) -> Dataset:
    if name is not None:
        dataset.name = name
    if description is not None:
        dataset.description = description
    try:
        with transaction.atomic():
            dataset.save(update_fields=["name", "description", "updated_at"])
    except IntegrityError as error:
        raise _name_taken(dataset.name) from error
    return dataset


def dataset_delete_start(*, principal: Principal, dataset: Dataset) -> Job:
    """Hide the dataset at once and queue the job that deletes its rows (millions are no request's work)."""
    with transaction.atomic():
        updated = (
            Dataset.objects.filter(pk=dataset.pk)
            .exclude(status=Dataset.Status.DELETING)
            .update(status=Dataset.Status.DELETING)
        )
        if not updated:
            raise Conflict(f"Dataset {dataset.pk} is already being deleted.")
        return job_create(principal=principal, kind=DATASET_DELETE_JOB_KIND, params={"dataset_id": dataset.pk})


def dataset_delete_rows(*, dataset_id: int, progress: Callable[[int], None]) -> int:
    """Set-based delete in batches of datarow ids, predictions and labels first; the dataset row last.

    Takes the dataset's import lock, so a delete never races an import. Returns the datarows deleted.
    """
    deleted = 0
    project_id = Dataset.objects.using(WRITER).filter(pk=dataset_id).values_list("project_id", flat=True).first()
    with connections[WRITER].cursor() as cursor:
        dataset_lock_take(cursor, dataset_id)
        try:
            while True:
                with transaction.atomic(using=WRITER):
                    cursor.execute(
                        """
                        WITH batch AS (SELECT id FROM datasets_datarow WHERE dataset_id = %s ORDER BY id LIMIT %s),
                             gone_predictions AS (DELETE FROM predictions_prediction p USING batch WHERE p.datarow_id = batch.id),
                             gone_labels AS (DELETE FROM datasets_label l USING batch WHERE l.datarow_id = batch.id)
                        SELECT array_agg(id) FROM batch""",
                        [dataset_id, DELETE_BATCH_ROWS],
                    )
                    (ids,) = cursor.fetchone()
                    if not ids:
                        cursor.execute("DELETE FROM datasets_dataset WHERE id = %s", [dataset_id])
                        break
                    cursor.execute("DELETE FROM datasets_datarow WHERE id = ANY(%s)", [ids])
                    deleted += len(ids)
                progress(deleted)
        finally:
            dataset_lock_release(cursor, dataset_id)
    if project_id is not None:
        dataset_deleted.send(sender=None, project_id=project_id, dataset_id=dataset_id)
    return deleted
