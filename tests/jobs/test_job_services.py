from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.runner import job_execute
from jobs.services import (
    JobCancelled,
    job_create,
    job_fail_stale,
    job_heartbeat,
    job_report_progress,
    job_request_cancel,
    job_resend_lost,
    job_start,
)
from jobs.tasks import COUNT_JOB_KIND, count_to, reap_stale_jobs
from mlops.exceptions import Conflict
from mlops.observability import log_context
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db


def _queued_job(principal, **params) -> Job:
    return job_create(principal=principal, kind=COUNT_JOB_KIND, params={"steps": 3, "delay_seconds": 0, **params})


def _running_job(principal) -> Job:
    return job_start(job_id=_queued_job(principal).pk)


def test_job_create_enqueues_once_committed_and_the_task_runs_the_job(
    in_tenant_a, principal, celery_eager, django_capture_on_commit_callbacks
):
    # given
    with django_capture_on_commit_callbacks() as enqueues:
        job = _queued_job(principal)
    # then nothing was sent before the commit
    assert len(enqueues) == 1
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED
    # when the commit sends the message (run eagerly)
    enqueues[0]()
    # then
    finished = Job.objects.get(pk=job.pk)
    assert finished.status == Job.Status.SUCCEEDED
    assert (finished.progress_done, finished.progress_total, finished.counters) == (3, 3, {"counted": 3})
    assert finished.kind == "count" and finished.owner_id == principal.user_id and finished.workspace_id == "ws-1"
    assert finished.started_at <= finished.finished_at and finished.celery_task_id == job.celery_task_id


def test_a_redelivered_message_does_not_run_the_job_again(in_tenant_a, principal):
    # given
    job = _queued_job(principal)
    runs = []

    def run(job, **params):
        runs.append(job.pk)

    # when the same message is delivered twice
    job_execute(job_id=str(job.pk), run=run)
    after_first = Job.objects.get(pk=job.pk)
    job_execute(job_id=str(job.pk), run=run)
    # then
    assert runs == [job.pk]
    assert Job.objects.get(pk=job.pk).revision == after_first.revision
    assert job_start(job_id=job.pk) is None


def test_progress_is_throttled_and_the_final_report_is_always_written(
    in_tenant_a, principal, settings, job_events, django_capture_on_commit_callbacks
):
    # given
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 60
    with django_capture_on_commit_callbacks(execute=True):
        job = _running_job(principal)
        events = job_events(job)
        # when
        for done in range(1, 5):
            job_report_progress(job=job, done=done, total=5)
        written_before_the_end = Job.objects.get(pk=job.pk).progress_done
        job_report_progress(job=job, done=5, total=5)
    # then
    assert written_before_the_end == 1
    assert job.progress_done == 5 and Job.objects.get(pk=job.pk).progress_done == 5
    # the start, the first report, the final one
    assert [event["job"]["progress"]["done"] for event in events()] == [0, 1, 5]


def test_every_write_reaches_the_tenant_job_group_in_revision_order(
    in_tenant_a, principal, settings, job_events, django_capture_on_commit_callbacks
):
    # given
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 0
    job = _queued_job(principal)
    events = job_events(job)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        count_to.apply(args=[str(job.pk)])
    # then
    received = events()
    row = Job.objects.get(pk=job.pk)
    assert [event["type"] for event in received] == ["job.update"] * len(received)
    assert [event["job"]["revision"] for event in received] == list(range(1, row.revision + 1))
    assert [event["job"]["status"] for event in received] == ["running"] * 4 + ["succeeded"]
    assert received[-1]["job"]["id"] == str(job.pk) and received[-1]["job"]["progress"] == {"done": 3, "total": 3}


def test_running_work_sees_a_cancel_at_its_next_progress_write(in_tenant_a, principal, settings):
    # given every report is written (throttled, a cancel is seen at the next written one)
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 0
    job = _queued_job(principal)
    reached = []

    def run(job, **params):
        for done in range(1, 100):
            reached.append(done)
            if done == 3:  # what POST /cancel does while the work runs
                job_request_cancel(job=Job.objects.get(pk=job.pk))
            job_report_progress(job=job, done=done, total=99)

    # when
    job_execute(job_id=str(job.pk), run=run)
    # then
    cancelled = Job.objects.get(pk=job.pk)
    assert reached == [1, 2, 3]
    assert cancelled.status == Job.Status.CANCELLED and cancelled.cancel_requested_at and cancelled.finished_at


def test_progress_report_raises_when_a_cancel_is_pending(in_tenant_a, principal):
    job = _running_job(principal)
    job_request_cancel(job=job)
    with pytest.raises(JobCancelled):
        job_report_progress(job=job, done=1, total=2)


def test_failing_work_leaves_the_job_failed_with_its_error(in_tenant_a, principal):
    # given
    job = _queued_job(principal)

    def run(job, **params):
        job_report_progress(job=job, done=1, total=10)
        raise ValueError("row 7 has no image")

    # when
    job_execute(job_id=str(job.pk), run=run)
    # then
    failed = Job.objects.get(pk=job.pk)
    assert failed.status == Job.Status.FAILED and failed.finished_at
    assert failed.error == "ValueError: row 7 has no image"
    assert failed.progress_done == 1


def test_work_stops_quietly_when_the_reaper_ended_its_job(in_tenant_a, principal, settings):
    # given
    settings.JOB_STALE_AFTER_SECONDS = 1
    job = _queued_job(principal)

    def run(job, **params):
        job_fail_stale(now=timezone.now() + timedelta(seconds=5))
        job_report_progress(job=job, done=1, total=2)

    # when
    job_execute(job_id=str(job.pk), run=run)
    # then the reaper's outcome stands: not overwritten by "succeeded" or a second error
    row = Job.objects.get(pk=job.pk)
    assert row.status == Job.Status.FAILED and "worker running this job was lost" in row.error


def test_cancelling_a_queued_job_ends_it_at_once_and_its_message_then_does_nothing(in_tenant_a, principal):
    # given
    job = _queued_job(principal)
    # when
    cancelled = job_request_cancel(job=job)
    count_to.apply(args=[str(job.pk)])
    # then
    assert cancelled.status == Job.Status.CANCELLED and cancelled.finished_at
    assert Job.objects.get(pk=job.pk).started_at is None


def test_cancelling_a_finished_job_is_a_conflict(in_tenant_a, principal):
    job = _queued_job(principal)
    count_to.apply(args=[str(job.pk)])
    with pytest.raises(Conflict, match="already succeeded"):
        job_request_cancel(job=job)


def test_heartbeat_touches_only_running_jobs(in_tenant_a, principal):
    queued, running = _queued_job(principal), _running_job(principal)
    assert job_heartbeat(job_id=queued.pk) is False
    assert job_heartbeat(job_id=running.pk) is True


def test_reaper_fails_stale_running_jobs_in_every_tenant_and_nothing_else(principal, settings):
    # given: in each tenant a running job silent for 2 minutes, a running job that just beat, a queued one
    settings.JOB_STALE_AFTER_SECONDS = 60
    jobs = {}
    for schema in (TENANT_A, TENANT_B):
        with tenant_scope(schema):
            stale, fresh, queued = _running_job(principal), _running_job(principal), _queued_job(principal)
            Job.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=2))
            jobs[schema] = (stale, fresh, queued)
    # when
    reap_stale_jobs()
    # then
    for schema, (stale, fresh, queued) in jobs.items():
        with tenant_scope(schema):
            reaped = Job.objects.get(pk=stale.pk)
            assert reaped.status == Job.Status.FAILED and reaped.finished_at
            assert reaped.error.startswith("The worker running this job was lost: no heartbeat for more than 60s.")
            assert Job.objects.get(pk=fresh.pk).status == Job.Status.RUNNING
            assert Job.objects.get(pk=queued.pk).status == Job.Status.QUEUED


def test_a_queued_job_is_sent_again_after_the_wait_and_each_wait_after_doubles(in_tenant_a, principal, settings):
    # given: a queued job (its first message sent at creation), a running one and a finished one, all old
    settings.JOB_RESEND_AFTER_SECONDS = 300
    queued, running = _queued_job(principal), _running_job(principal)
    finished = _running_job(principal)
    Job.objects.filter(pk=finished.pk).update(status=Job.Status.SUCCEEDED)
    created = Job.objects.get(pk=queued.pk).sent_at

    def sweep(after_seconds: float) -> list:
        return [job.pk for job in job_resend_lost(now=created + timedelta(seconds=after_seconds))]

    # when / then: re-sent after 300 s, then 600 s after that, then 1200 s after that; never before
    assert sweep(299) == []
    assert sweep(301) == [queued.pk]
    assert sweep(301 + 599) == []
    assert sweep(301 + 601) == [queued.pk]
    assert sweep(902 + 1199) == []
    assert sweep(902 + 1201) == [queued.pk]
    assert Job.objects.get(pk=queued.pk).resends == 3
    assert Job.objects.get(pk=queued.pk).status == Job.Status.QUEUED


def test_a_resent_message_runs_the_job_once(
    in_tenant_a, principal, settings, celery_eager, django_capture_on_commit_callbacks
):
    # given: a job whose first message was lost (its send captured and never run)
    settings.JOB_RESEND_AFTER_SECONDS = 300
    with django_capture_on_commit_callbacks():
        job = _queued_job(principal)
    # when: the sweep sends it again, and the message runs (eagerly)
    with django_capture_on_commit_callbacks(execute=True):
        resent = job_resend_lost(now=timezone.now() + timedelta(seconds=301))
    # then
    assert [row.pk for row in resent] == [job.pk]
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED


def test_the_job_id_is_in_the_log_context_while_it_runs(in_tenant_a, principal):
    job = _queued_job(principal)
    seen = {}

    def run(job, **params):
        seen.update(log_context.get())

    job_execute(job_id=str(job.pk), run=run)
    assert seen["job_id"] == str(job.pk) and seen["job_kind"] == "count"


def test_a_job_task_sent_without_a_tenant_refuses_to_run(principal, celery_eager):
    # given a job of tenant A, and a message for it sent from outside any tenant, without the header
    with tenant_scope(TENANT_A):
        job = _queued_job(principal)
    # when / then
    with pytest.raises(RuntimeError, match="sent without an active tenant"):
        count_to.apply(args=[str(job.pk)])
    with tenant_scope(TENANT_A):
        assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED
