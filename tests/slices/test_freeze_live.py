"""The freeze job with the real things: a Celery worker consuming from Redis fills the slice in tenant A.
(What a failed or cancelled freeze leaves is in test_services.py.)"""

import pytest

from tests.conftest import TENANT_A
from tests.factories import datarows_make, dataset_make, principal_make, project_make
from tests.live_services import wait_until

pytestmark = pytest.mark.usefixtures("committed_tenants")


def test_a_large_freeze_is_filled_by_a_worker(live_worker, monkeypatch):
    from datasets.services.datasets import dataset_delete_rows
    from projects.services import project_delete
    from tenancy.context import tenant_scope

    principal = principal_make(tenant=TENANT_A)
    monkeypatch.setattr("slices.services.FREEZE_IN_REQUEST_MAX", 10)
    with tenant_scope(TENANT_A):
        project = project_make()
        dataset = dataset_make(project=project)
        rows = datarows_make(dataset=dataset, count=300, tags=lambda i: ["keep"] if i % 3 else [])
        try:
            job = _freeze_with_the_worker(live_worker, principal, project, rows)
        finally:  # committed data outlives the test: later tests in tenant A expect it gone
            dataset_delete_rows(dataset_id=dataset.pk, progress=lambda deleted: None)
            project_delete(project=project)
    assert f'"job_id": "{job.pk}"' in live_worker.log()


def _freeze_with_the_worker(live_worker, principal, project, rows):
    from jobs.models import Job
    from slices.models import Slice, SliceMember
    from slices.services import slice_freeze_start

    started = slice_freeze_start(principal=principal, project=project, name="kept", query="tags = 'keep'")
    assert started.job is not None and started.slice.frozen_at is None

    def finished():
        job = Job.objects.get(pk=started.job.pk)
        return job if job.is_finished else None

    job = wait_until(finished, timeout=60, what="the freeze job to finish", logs_of=(live_worker,))
    frozen = Slice.objects.get(pk=started.slice.pk)
    assert (job.status, job.counters["members"], frozen.member_count) == ("succeeded", 200, 200)
    assert frozen.frozen_at is not None
    assert sorted(SliceMember.objects.filter(slice=frozen).values_list("datarow_id", flat=True)) == [
        row.pk for i, row in enumerate(rows) if i % 3
    ]
    return job
