"""Job limits with a real Celery worker (prefork, as in production, so Celery's time limits apply) and jobs started
over REST on the ASGI server."""

import httpx
import pytest

from tests.conftest import TENANT_A, TENANT_B
from tests.live_services import live_environment, purge_task_queues, start_celery_worker, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

COUNT_TIME_LIMIT = 6


@pytest.fixture(scope="module")
def limited_worker(django_db_setup, auth0, platform, live_log_dir):
    """Two worker processes; one running job per tenant and queue; a count job may run COUNT_TIME_LIMIT seconds (the
    server keeps the default limit, so it accepts longer counts: the worker's own limit applies)."""
    purge_task_queues()
    env = live_environment(
        auth0,
        platform,
        JOB_MAX_RUNNING_PER_TENANT=1,
        JOB_WAIT_TURN_SECONDS=0.3,
        JOB_TIME_LIMITS=f'{{"count": {COUNT_TIME_LIMIT}}}',
        JOB_HARD_TIME_LIMIT_GRACE_SECONDS=5,
    )
    worker = start_celery_worker(env, live_log_dir, name="limited-worker", concurrency=2)
    yield worker
    worker.stop()


def _start(server, token: str, *, steps: int, delay_seconds: float) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/jobs/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={"kind": "count", "steps": steps, "delay_seconds": delay_seconds},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _job(server, token: str, job_id: str) -> dict:
    response = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_job_past_its_time_limit_is_stopped_and_ends_failed_saying_so(live_asgi_server, limited_worker, make_token):
    # given a count of 30 s on a worker that allows 6 s
    token = make_token(TENANT_B)
    job_id = _start(live_asgi_server, token, steps=300, delay_seconds=0.1)
    # when / then
    failed = wait_until(
        lambda: (job := _job(live_asgi_server, token, job_id))["status"] == "failed" and job,
        timeout=30,
        what="the job to fail at its time limit",
        logs_of=(limited_worker,),
    )
    assert failed["error"] == (
        f'The job ran past its time limit of {COUNT_TIME_LIMIT} s (setting JOB_TIME_LIMITS["count"]) and was stopped.'
    )
    assert 0 < failed["progress"]["done"] < 300


def test_a_tenant_past_its_share_waits_queued_while_another_tenants_job_runs(
    live_asgi_server, limited_worker, make_token
):
    # given tenant A runs a long count (it stops at its time limit) and has a second one waiting
    token_a, token_b = make_token(TENANT_A), make_token(TENANT_B)
    long_a = _start(live_asgi_server, token_a, steps=300, delay_seconds=0.1)
    wait_until(
        lambda: _job(live_asgi_server, token_a, long_a)["status"] == "running",
        timeout=20,
        what="A's first job to run",
        logs_of=(limited_worker,),
    )
    extra_a = _start(live_asgi_server, token_a, steps=2, delay_seconds=0.1)
    # when tenant B starts a job
    job_b = _start(live_asgi_server, token_b, steps=2, delay_seconds=0.1)
    # then B's job runs to its end while A's extra one is still queued behind A's first
    wait_until(
        lambda: _job(live_asgi_server, token_b, job_b)["status"] == "succeeded",
        timeout=20,
        what="B's job to run",
        logs_of=(limited_worker,),
    )
    assert _job(live_asgi_server, token_a, extra_a)["status"] == "queued"
    assert _job(live_asgi_server, token_a, long_a)["status"] == "running"
    # and once A's first job ends, A's extra one runs
    extra = wait_until(
        lambda: (job := _job(live_asgi_server, token_a, extra_a))["status"] == "succeeded" and job,
        timeout=30,
        what="A's extra job to run",
        logs_of=(limited_worker,),
    )
    first = _job(live_asgi_server, token_a, long_a)
    assert first["status"] == "failed" and extra["started_at"] >= first["finished_at"]
    assert "waits its turn" in limited_worker.log()
