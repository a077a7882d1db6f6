"""Bulk actions by query with a real Celery worker on Redis: a delete that keeps the counts exact, and a cancel
that the worker sees between batches."""

import psycopg
import pytest
from django.db import connections

from datasets.models import DataRow, Dataset, Label
from jobs.models import Job
from search.services import BULK_BATCH_ROWS
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.conftest import import_records, import_root, tenant_dataset, write_jsonl  # noqa: F401 (fixtures)
from tests.live_services import (  # noqa: F401 (live_log_dir is a fixture)
    live_environment,
    live_log_dir,
    purge_task_queues,
    start_celery_worker,
    wait_until,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]


@pytest.fixture(scope="module")
def live_worker(django_db_setup, auth0, platform, live_log_dir):
    """A worker that writes every progress report, so a cancel is seen right after the batch it interrupts."""
    purge_task_queues()
    worker = start_celery_worker(
        live_environment(auth0, platform, JOB_PROGRESS_MIN_INTERVAL_SECONDS=0), live_log_dir, name="worker"
    )
    yield worker
    worker.stop()


def _row(i: int, **extra) -> dict:
    return {"external_id": f"img-{i:05d}", "uri": f"s3://bucket/{i}.jpg", **extra}


def _start(client, project_id: int, body: dict) -> dict:
    response = client.post(f"/api/v1/projects/{project_id}/search/bulk", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def _job(job_id: str) -> Job:
    with tenant_scope(TENANT_A):
        return Job.objects.using("default").get(pk=job_id)


def test_a_worker_deletes_the_matches_and_the_dataset_counts_follow(
    live_worker,
    tenant_dataset,
    import_records,
    make_token,
    api_client,
):
    # given 30 rows, every third with two cats
    import_records([_row(i, labels=[{"class": "cat"}] * 2 if i % 3 == 0 else [{"class": "dog"}]) for i in range(30)])
    # when
    job = _start(
        api_client(make_token(TENANT_A)),
        tenant_dataset.project_id,
        {"query": "COUNT(label WHERE class = 'cat') >= 2", "action": "delete"},
    )
    wait_until(lambda: _job(job["id"]).is_finished, timeout=60, what="the bulk delete to end", logs_of=(live_worker,))
    # then
    finished = _job(job["id"])
    assert finished.status == Job.Status.SUCCEEDED, finished.error
    assert finished.counters == {"matched": 10, "done": 10, "labels": 20, "predictions": 0}
    with tenant_scope(TENANT_A):
        dataset = Dataset.objects.get(pk=tenant_dataset.pk)
        assert (dataset.datarow_count, dataset.label_count) == (20, 20)
        assert DataRow.objects.filter(dataset=dataset).count() == 20
        assert set(Label.objects.filter(datarow__dataset=dataset).values_list("ontology_class__name", flat=True)) == {
            "dog"
        }


def test_a_cancel_stops_the_worker_after_the_batch_it_is_writing(
    live_worker,
    tenant_dataset,
    import_records,
    make_token,
    api_client,
):
    # given one batch and a bit more, and another session holding a row of the first batch locked
    import_records([_row(i) for i in range(BULK_BATCH_ROWS + 100)])
    with tenant_scope(TENANT_A):
        first_id = DataRow.objects.filter(dataset=tenant_dataset).order_by("id").values_list("id", flat=True)[0]
        params = connections["default"].get_connection_params()
    client = api_client(make_token(TENANT_A))
    with psycopg.connect(**params) as blocker:
        blocker.execute(f"SET search_path TO {TENANT_A}")
        blocker.execute("SELECT 1 FROM datasets_datarow WHERE id = %s FOR UPDATE", [first_id])
        # when the job has counted the matches (its first progress write) and cannot finish its first batch
        # before that row is free, a cancel comes in
        job = _start(client, tenant_dataset.project_id, {"query": "", "action": "tag", "tags": ["seen"]})
        wait_until(
            lambda: _job(job["id"]).progress_total is not None,
            timeout=60,
            what="the job to count",
            logs_of=(live_worker,),
        )
        assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
        blocker.rollback()
    wait_until(lambda: _job(job["id"]).is_finished, timeout=60, what="the job to end", logs_of=(live_worker,))
    # then the first batch is written, whole, and nothing after it
    finished = _job(job["id"])
    assert finished.status == Job.Status.CANCELLED, finished.error
    assert finished.counters["done"] == BULK_BATCH_ROWS and finished.progress_total == BULK_BATCH_ROWS + 100
    with tenant_scope(TENANT_A):
        assert DataRow.objects.filter(dataset=tenant_dataset, tags__contains=["seen"]).count() == BULK_BATCH_ROWS
