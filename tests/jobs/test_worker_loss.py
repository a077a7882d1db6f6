"""Workers that die mid-job, with real Celery workers on Redis and beat running the reaper.

Each test starts its own workers (not the shared live_worker), with the reaper tuned down through the
environment: stale after STALE_AFTER s, swept every REAPER_INTERVAL s, heartbeats every HEARTBEAT s.
"""

import re
import time
import uuid

import httpx
import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.services import job_create
from jobs.tasks import COUNT_JOB_KIND
from mlops.db_routing import WRITER
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.live_services import (
    free_port,
    live_environment,
    purge_task_queues,
    start_asgi_server,
    start_celery_worker,
    wait_until,
)

# Committed data, so the subprocesses see it; reads here may go to the reader (a mirror of the test database).
pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

STALE_AFTER = 2.0
REAPER_INTERVAL = 1.0
HEARTBEAT = 0.4


@pytest.fixture
def workers(auth0, platform, tmp_path):
    """Start workers with `start(name, beat=..., concurrency=..., **env)`; all are stopped when the test ends."""
    purge_task_queues()
    started = []

    def start(name: str, *, beat: bool = False, concurrency: int = 1, **env):
        worker = start_celery_worker(
            live_environment(auth0, platform, **env), tmp_path, name=name, beat=beat, concurrency=concurrency
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _reaping(**env) -> dict:
    return {
        "JOB_STALE_AFTER_SECONDS": STALE_AFTER,
        "JOB_REAPER_INTERVAL_SECONDS": REAPER_INTERVAL,
        "JOB_HEARTBEAT_SECONDS": HEARTBEAT,
        **env,
    }


def _start_count_job(principal, *, steps: int, delay_seconds: float) -> Job:
    with tenant_scope(TENANT_A):
        return job_create(
            principal=principal, kind=COUNT_JOB_KIND, params={"steps": steps, "delay_seconds": delay_seconds}
        )


def _job(job_id) -> Job:
    with tenant_scope(TENANT_A):
        return Job.objects.using(WRITER).get(pk=job_id)


def test_a_killed_worker_leaves_its_job_failed_and_the_redelivered_message_does_not_run_it_again(workers, principal):
    # given a job counting on a worker
    doomed = workers("doomed")
    job = _start_count_job(principal, steps=1000, delay_seconds=0.05)
    running = wait_until(
        lambda: (row := _job(job.pk)).progress_done >= 2 and row,
        timeout=20,
        what="the job to be counting",
        logs_of=(doomed,),
    )
    # when the worker is killed outright, and another worker (running beat, so the reaper) comes up; its
    # 1 s visibility timeout hands it the dead worker's unacknowledged message at start-up
    doomed.kill()
    killed_at = time.monotonic()
    rescuer = workers("rescuer", beat=True, **_reaping(CELERY_VISIBILITY_TIMEOUT=1))
    ready_after = time.monotonic() - killed_at
    # then the job is failed within the bound once the reaper runs: stale-after + reaper interval
    failed = wait_until(
        lambda: (row := _job(job.pk)).status != Job.Status.RUNNING and row,
        timeout=STALE_AFTER + REAPER_INTERVAL + 10,
        what="the reaper to fail the job",
        logs_of=(rescuer,),
    )
    failed_after = time.monotonic() - killed_at
    assert failed.status == Job.Status.FAILED
    assert failed.error.startswith("The worker running this job was lost: no heartbeat for more than 2s.")
    assert failed_after <= max(ready_after, STALE_AFTER) + REAPER_INTERVAL + 2
    # and the redelivered message was received and refused: the job was not started again
    wait_until(
        lambda: f"job {job.pk} is not queued" in rescuer.log(),
        timeout=10,
        what="the rescuer to refuse the redelivered message",
        logs_of=(rescuer,),
    )
    final = _job(job.pk)
    assert final.status == Job.Status.FAILED and final.started_at == running.started_at
    assert running.progress_done <= final.progress_done < 1000
    assert rescuer.log().count(f"Task jobs.tasks.count_to[{job.celery_task_id}] received") == 1


def test_heartbeats_keep_a_quiet_job_alive_past_the_stale_limit(workers, principal):
    # given a worker running the reaper (in its second process), and a job that reports nothing for longer
    # than the stale limit
    worker = workers("quiet", beat=True, concurrency=2, **_reaping())
    job = _start_count_job(principal, steps=1, delay_seconds=STALE_AFTER + 2 * REAPER_INTERVAL + 1)
    # when it runs to the end
    ended = wait_until(
        lambda: (row := _job(job.pk)).is_finished and row, timeout=20, what="the quiet job to end", logs_of=(worker,)
    )
    # then its heartbeats, not progress, kept away the reaper, which swept while it ran
    assert ended.status == Job.Status.SUCCEEDED, ended.error
    sweeps = re.findall(r"Task jobs\.reap_stale_jobs\[[0-9a-f-]+\] succeeded", worker.log())
    assert len(sweeps) >= 2


def test_a_job_whose_message_was_lost_is_sent_again_by_the_reaper_and_runs(workers, principal):
    # given: a queued job whose message never reached the broker (the row committed, the publish lost)
    with tenant_scope(TENANT_A):
        job = Job.objects.create(
            kind="count",
            params={"steps": 2, "delay_seconds": 0},
            workspace_id="ws-1",
            owner_id=principal.user_id,
            celery_task_id=str(uuid.uuid4()),
            sent_at=timezone.now(),
        )
    # when: a worker runs beat, so the reaper, with a 1 s re-send wait
    worker = workers("sweeper", beat=True, **_reaping(JOB_RESEND_AFTER_SECONDS=1))
    # then: the sweep sends its message again and the worker runs it
    done = wait_until(
        lambda: (row := _job(job.pk)).is_finished and row,
        timeout=30,
        what="the lost job to be sent again and run",
        logs_of=(worker,),
    )
    assert done.status == Job.Status.SUCCEEDED and done.resends >= 1
    assert f"job {job.pk} sent again (re-send 1)" in worker.log()


def test_a_job_started_while_the_broker_is_unreachable_is_accepted_and_runs_once_sent_again(
    workers, principal, auth0, platform, make_token, tmp_path
):
    # given: a web server whose broker address refuses connections
    broker_down = live_environment(auth0, platform, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    server = start_asgi_server(broker_down, tmp_path)
    try:
        # when: a job is started through it
        response = httpx.post(
            f"{server.url}/api/v1/jobs/",
            headers={"Authorization": f"Bearer {make_token(TENANT_A)}"},
            json={"kind": "count", "steps": 2, "delay_seconds": 0},
            timeout=30,
        )
    finally:
        server.stop()
    # then: the job was created and stays queued, and the server said why it has no message yet
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    assert _job(job_id).status == Job.Status.QUEUED
    assert f"job {job_id}: its message could not be sent" in server.log()
    # when: a worker on the real broker runs the reaper with a 1 s re-send wait
    worker = workers("after-outage", beat=True, **_reaping(JOB_RESEND_AFTER_SECONDS=1))
    # then: the reaper sends the message and the job runs
    done = wait_until(
        lambda: (row := _job(job_id)).is_finished and row,
        timeout=30,
        what="the job to be sent again and run",
        logs_of=(worker,),
    )
    assert done.status == Job.Status.SUCCEEDED and done.resends >= 1
