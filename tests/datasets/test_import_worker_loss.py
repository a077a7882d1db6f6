"""A worker killed with `kill -9` in the middle of an all-or-nothing import: nothing of it may remain.

Its own module, so that no other worker is consuming the queue when the doomed one takes the job.
"""

import pytest

from datasets.models import DataRow, Dataset, Label
from jobs.models import Job
from mlops.db_routing import WRITER
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.manifests import manifest_rows, write_manifest
from tests.factories import dataset_make, principal_make, project_make
from tests.live_services import live_environment, purge_task_queues, start_celery_worker, wait_until

pytestmark = pytest.mark.usefixtures("committed_tenants")


def _snapshot(dataset_id: int):
    with tenant_scope(TENANT_A):
        dataset = Dataset.objects.using(WRITER).get(pk=dataset_id)
        return (
            sorted(DataRow.objects.using(WRITER).filter(dataset_id=dataset_id).values_list("external_id", "uri")),
            Label.objects.using(WRITER).filter(datarow__dataset_id=dataset_id).count(),
            (dataset.datarow_count, dataset.label_count),
        )


def _lock_is_free(dataset_id: int) -> bool:
    from django.db import connections

    from datasets.locks import dataset_lock_release, dataset_lock_take
    from mlops.exceptions import Conflict

    with tenant_scope(TENANT_A), connections[WRITER].cursor() as cursor:
        try:
            dataset_lock_take(cursor, dataset_id)
        except Conflict:
            return False
        dataset_lock_release(cursor, dataset_id)
        return True


def test_a_worker_killed_mid_import_in_abort_mode_leaves_the_dataset_as_it_was(auth0, platform, tmp_path, settings):
    from datasets.services.imports import ImportOptions, dataset_import_run, dataset_import_start

    settings.LOCAL_READ_ROOT = tmp_path / "imports"
    read_root = settings.LOCAL_READ_ROOT / TENANT_A
    read_root.mkdir(parents=True)
    settings.STORAGE_ROOT = tmp_path / "storage"
    live_env = live_environment(
        auth0, platform, MLOPS_LOCAL_READ_ROOT=settings.LOCAL_READ_ROOT, MLOPS_STORAGE_ROOT=tmp_path / "storage"
    )
    # given a dataset that already holds rows
    with tenant_scope(TENANT_A):
        dataset = dataset_make(project=project_make(), name="d")
        dataset_import_run(
            dataset=dataset,
            uri=write_manifest(read_root / "seed.jsonl", manifest_rows(0, 10)),
            options=ImportOptions(create_classes=True),
            source="import:seed",
            user="t",
            progress=lambda counters, errors: None,
        )
    before = _snapshot(dataset.pk)
    # a worker with small batches, so an all-or-nothing import spends a while merging uncommitted batches
    purge_task_queues()
    doomed = start_celery_worker({**live_env, "IMPORT_BATCH_LINES": "100"}, tmp_path, name="doomed")
    manifest = write_manifest(read_root / "big.jsonl", manifest_rows(10, 100_000))
    with tenant_scope(TENANT_A):
        editor = principal_make(tenant=TENANT_A)
        job = dataset_import_start(
            principal=editor,
            dataset=dataset,
            uri=manifest,
            options=ImportOptions(on_error="abort", create_classes=True),
        )

    def merged_some() -> Job | None:
        with tenant_scope(TENANT_A):
            row = Job.objects.using(WRITER).get(pk=job.pk)
            return row if row.counters.get("inserted", 0) >= 300 else None

    merging = wait_until(merged_some, timeout=60, what="the import to merge a few batches", logs_of=(doomed,))
    # when the worker is killed outright mid-import
    doomed.kill()
    assert merging.status == Job.Status.RUNNING and merging.counters["inserted"] < 100_000
    # then PostgreSQL rolls the import back: rows, labels and counts are exactly as before, and the lock is
    # freed as soon as the server notices the session is gone
    wait_until(lambda: _lock_is_free(dataset.pk), timeout=30, what="the dead import's lock to go")
    assert _snapshot(dataset.pk) == before
    with tenant_scope(TENANT_A):
        again = dataset_import_run(
            dataset=Dataset.objects.using(WRITER).get(pk=dataset.pk),
            uri=write_manifest(read_root / "after.jsonl", manifest_rows(50_000, 3)),
            options=ImportOptions(create_classes=True),
            source="import:after",
            user="t",
            progress=lambda counters, errors: None,
        )
    assert again.inserted == 3
