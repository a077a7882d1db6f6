"""Job time limits and the per-tenant share of running jobs, at the service and API level (the live worker's side is
in test_live_job_limits.py)."""

import time
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from jobs.models import Job
from jobs.runner import job_execute
from jobs.services import (
    SENT_AT_HEADER,
    JobMustWait,
    job_create,
    job_fail_stale,
    job_report_progress,
    job_start,
    job_wait_turn,
)
from jobs.tasks import COUNT_JOB_KIND, count_to
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db


def _queued_job(principal) -> Job:
    return job_create(principal=principal, kind=COUNT_JOB_KIND, params={"steps": 3, "delay_seconds": 0})


def test_every_job_task_carries_its_kinds_soft_and_hard_time_limit(settings):
    from mlops.celery import app

    job_tasks = {task.job_kind: task for task in app.tasks.values() if getattr(task, "job_kind", None)}
    grace = settings.JOB_HARD_TIME_LIMIT_GRACE_SECONDS
    assert set(job_tasks) <= set(settings.JOB_TIME_LIMITS)
    for kind, task in job_tasks.items():
        assert (task.soft_time_limit, task.time_limit) == (
            settings.JOB_TIME_LIMITS[kind],
            settings.JOB_TIME_LIMITS[kind] + grace,
        )
    assert count_to.soft_time_limit == 600


def test_a_job_stopped_at_its_soft_time_limit_fails_naming_the_limit_and_its_setting(in_tenant_a, principal):
    # given
    job = _queued_job(principal)

    def run(job, **params):
        raise SoftTimeLimitExceeded()  # what Celery raises in the job when the soft limit passes

    # when
    job_execute(job_id=str(job.pk), run=run)
    # then
    failed = Job.objects.get(pk=job.pk)
    assert failed.status == Job.Status.FAILED and failed.finished_at
    assert (
        failed.error == 'The job ran past its time limit of 600 s (setting JOB_TIME_LIMITS["count"]) and was stopped.'
    )


def test_a_job_that_reports_progress_past_its_time_limit_fails_even_if_the_soft_limit_was_swallowed(
    in_tenant_a, principal, settings
):
    # given a count limit of 0.05 s, and work whose `except Exception` swallowed Celery's SoftTimeLimitExceeded
    settings.JOB_TIME_LIMITS = {**settings.JOB_TIME_LIMITS, "count": 0.05}
    job = _queued_job(principal)

    def run(job, **params):
        time.sleep(0.1)
        job_report_progress(job=job, done=1, total=3)

    # when
    job_execute(job_id=str(job.pk), run=run)
    # then
    failed = Job.objects.get(pk=job.pk)
    assert failed.status == Job.Status.FAILED
    assert (
        failed.error == 'The job ran past its time limit of 0.05 s (setting JOB_TIME_LIMITS["count"]) and was stopped.'
    )


def test_the_reaper_says_a_job_past_its_hard_time_limit_was_killed(in_tenant_a, principal, settings):
    # given: a running job started 700 s ago (limit 600 s + 60 s grace) and one started 100 s ago, both silent
    settings.JOB_STALE_AFTER_SECONDS = 60
    now = timezone.now()
    killed, lost = (job_start(job_id=_queued_job(principal).pk) for _ in range(2))
    Job.objects.filter(pk=killed.pk).update(
        started_at=now - timedelta(seconds=700), heartbeat_at=now - timedelta(seconds=640)
    )
    Job.objects.filter(pk=lost.pk).update(
        started_at=now - timedelta(seconds=100), heartbeat_at=now - timedelta(seconds=90)
    )
    # when
    job_fail_stale(now=now)
    # then
    assert Job.objects.get(pk=killed.pk).error == (
        'The job ran past its time limit of 600 s (setting JOB_TIME_LIMITS["count"]) and did not stop; its worker '
        "process was killed 60 s later (setting JOB_HARD_TIME_LIMIT_GRACE_SECONDS)."
    )
    assert Job.objects.get(pk=lost.pk).error.startswith("The worker running this job was lost")


def test_a_count_job_that_cannot_finish_within_its_time_limit_is_refused(make_token, api_client):
    client = api_client(make_token(TENANT_A))
    response = client.post("/api/v1/jobs/", {"kind": "count", "steps": 100_000, "delay_seconds": 60}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["extra"]["fields"]["delay_seconds"] == [
        "steps × delay_seconds is 6e+06 s, more than the count job's time limit of 600 s "
        '(setting JOB_TIME_LIMITS["count"]).'
    ]
    with tenant_scope(TENANT_A):
        assert not Job.objects.exists()
    within = client.post("/api/v1/jobs/", {"kind": "count", "steps": 600, "delay_seconds": 1}, format="json")
    assert within.status_code == 201, within.content


def test_a_tenant_runs_at_most_its_share_of_jobs_on_a_queue_and_other_tenants_are_not_counted(principal, settings):
    # given: tenant A runs 2 count jobs (the default queue) and one whose worker was lost, tenant B none
    settings.JOB_MAX_RUNNING_PER_TENANT = 2
    settings.JOB_STALE_AFTER_SECONDS = 60
    with tenant_scope(TENANT_A):
        lost = job_start(job_id=_queued_job(principal).pk, queue="celery")
        Job.objects.filter(pk=lost.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
        for _ in range(2):
            assert job_start(job_id=_queued_job(principal).pk, queue="celery")
        third = _queued_job(principal)
        # when / then: A's third waits and stays queued
        with pytest.raises(JobMustWait, match="already runs 2 jobs on queue celery"):
            job_start(job_id=third.pk, queue="celery")
        assert Job.objects.get(pk=third.pk).status == Job.Status.QUEUED
        # a queue whose own limit is higher takes it; no count job is routed to the training queue
        settings.JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE = {"celery": 3}
        assert job_start(job_id=third.pk, queue="celery").status == Job.Status.RUNNING
        assert job_start(job_id=_queued_job(principal).pk, queue="training").status == Job.Status.RUNNING
    with tenant_scope(TENANT_B):
        assert job_start(job_id=_queued_job(principal).pk, queue="celery").status == Job.Status.RUNNING


def test_only_the_latest_message_of_a_waiting_job_sends_it_again(
    in_tenant_a, principal, settings, django_capture_on_commit_callbacks
):
    # given a queued job whose message was sent at `sent_at`
    settings.JOB_WAIT_TURN_SECONDS = 5
    job = _queued_job(principal)
    sent_at = Job.objects.get(pk=job.pk).sent_at
    published = []
    count_to.apply_async, original = (lambda *args, **options: published.append(options)), count_to.apply_async
    try:
        with django_capture_on_commit_callbacks(execute=True):
            # when the delivery of that message must wait, it is sent again later; then a stale duplicate is dropped
            assert job_wait_turn(job_id=job.pk, task=count_to, sent_at=sent_at) is True
            assert job_wait_turn(job_id=job.pk, task=count_to, sent_at=sent_at) is False
    finally:
        count_to.apply_async = original
    # then
    waiting = Job.objects.get(pk=job.pk)
    assert waiting.status == Job.Status.QUEUED and waiting.sent_at > sent_at and waiting.resends == 0
    assert len(published) == 1 and published[0]["countdown"] == 5
    assert published[0]["headers"][SENT_AT_HEADER] == waiting.sent_at.isoformat()
    assert published[0]["headers"]["tenant_schema"] == TENANT_A
