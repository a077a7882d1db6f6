"""An evaluation run on a real Celery worker consuming from Redis: started over REST in this process, matched and
written by the worker on its own connection, its progress and metrics read back from the job's row."""

import pytest

from evaluations.models import EvaluationRun, ObjectMatch
from jobs.models import Job
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.conftest import wait_for_reader
from tests.evaluations.test_evaluation_api import make_detection_world
from tests.evaluations.test_matching import cocoeval
from tests.live_services import live_environment, purge_task_queues, start_celery_worker, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]


@pytest.fixture(scope="module")
def worker(django_db_setup, auth0, platform, live_log_dir):
    purge_task_queues()
    worker = start_celery_worker(
        live_environment(auth0, platform, JOB_PROGRESS_MIN_INTERVAL_SECONDS=0), live_log_dir, name="evaluation"
    )
    yield worker
    worker.stop()


def test_a_run_is_matched_by_the_worker_and_its_metrics_are_pycocotools(make_token, api_client, worker):
    # given
    with tenant_scope(TENANT_A):
        project, version, members, truths, detections, labels, _ = make_detection_world(seed=3, images=40)
    client = api_client(make_token(TENANT_A))
    wait_for_reader()
    # when
    started = client.post(
        f"/api/v1/projects/{project.pk}/evaluation-runs",
        {"model_version_id": version.pk, "slice_id": members.pk},
        format="json",
    )
    assert started.status_code == 202, started.content
    job_id = started.json()["job"]["id"]

    def ended():
        with tenant_scope(TENANT_A):
            job = Job.objects.using("default").get(pk=job_id)
        return job.status in {Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED} and job

    job = wait_until(ended, timeout=60, what=f"job {job_id} to end", interval=0.2, logs_of=(worker,))
    # then
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.progress_done, job.progress_total) == (40, 40)
    with tenant_scope(TENANT_A):
        run = EvaluationRun.objects.using("default").get(pk=started.json()["id"])
        stored = ObjectMatch.objects.using("default").filter(run=run, side="label").count()
    assert run.metrics["map"] == pytest.approx(cocoeval(truths, detections).stats[0], abs=1e-12)
    assert stored == sum(1 for label in labels if not label.attributes["iscrowd"])
