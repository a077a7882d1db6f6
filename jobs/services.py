"""Every change to a Job: one conditional UPDATE on the writer, then the new row to its websocket group.

Status only moves forward (queued -> running -> succeeded | failed | cancelled, or queued -> cancelled), and
each move is guarded by the status it leaves, so two writers (a redelivered message, the reaper, a cancel
request) can never both win.
"""

import logging
import shutil
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cache

from celery import Task, current_app
from django.conf import settings
from django.db import connections, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Power
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from jobs.events import job_broadcast
from jobs.limits import job_max_running, job_time_limit
from jobs.models import TERMINAL_STATUSES, Job
from jobs.registry import job_task_get, job_tasks
from jobs.state import job_state
from mlops.celery import TENANT_HEADER
from mlops.db_routing import WRITER, tenant_reads_see_writer
from mlops.exceptions import Conflict
from mlops.storage import upload_folder
from tenancy.principal import Principal

logger = logging.getLogger(__name__)

# A job may own an uploaded file (an upload:// URI in this param, not passed to its task): it is deleted
# once the job has ended, however it ended (succeeded, failed, cancelled, or failed by the reaper).
OWNED_UPLOAD_PARAM = "owned_upload"


class JobCancelled(Exception):
    """Raised from a progress report when a cancel was requested: the runner records the job as cancelled."""


class JobNoLongerRunning(Exception):
    """Raised from a progress report when the job was ended elsewhere (the reaper failed it): stop quietly."""


class JobPastTimeLimit(Exception):
    """Raised from a progress report once the job has run longer than its kind's time limit: the runner fails it.
    Celery's soft limit raises in the job too, but any `except Exception` on the way (a websocket send) can swallow it;
    a report cannot be ignored."""


class JobMustWait(Exception):
    """Raised by job_start: the tenant already runs its share of jobs on the job's queue."""


# A job's message carries when it was sent (Job.sent_at), so only the delivery of its latest message waits its turn
# (job_wait_turn): duplicates die out instead of each sending itself again for ever.
SENT_AT_HEADER = "job_sent_at"


def _transition(
    *, job_id: uuid.UUID | str, from_statuses: Collection[str], changes: dict, extra_filter: Q = Q()
) -> Job | None:
    """Apply `changes` only if the job is in one of `from_statuses`; return the new row, or None if it was not."""
    updated = Job.objects.filter(extra_filter, pk=job_id, status__in=from_statuses).update(
        **changes,
        revision=F("revision") + 1,
    )
    if not updated:
        return None
    job = Job.objects.using(WRITER).get(pk=job_id)
    owned_upload = job.params.get(OWNED_UPLOAD_PARAM)
    folder = upload_folder(owned_upload) if owned_upload and job.status in TERMINAL_STATUSES else None
    if folder:
        # Found now, in the job's tenant: the commit may come after another tenant became active.
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True), using=WRITER)
    # The state as of this write (the caller goes on changing the instance), announced only once committed.
    tenant_schema, state = connections[WRITER].schema_name, job_state(job)
    transaction.on_commit(lambda: _job_announce(tenant_schema=tenant_schema, state=state), using=WRITER)
    return job


def _job_announce(*, tenant_schema: str, state: dict) -> None:
    # Recorded first: a client that refetches on this news reads this state or a later one, whoever it is.
    tenant_reads_see_writer(tenant_schema=tenant_schema)
    job_broadcast(tenant_schema=tenant_schema, state=state)


def job_create(*, principal: Principal, kind: str, params: dict | None = None) -> Job:
    """A queued job of `kind`, run by the task registered for it (jobs.runner.job_task); its message is sent once
    the row is committed."""
    task = job_task_get(kind=kind)
    job = Job.objects.create(
        kind=kind,
        params=params or {},
        workspace_id=principal.workspace_id,
        owner_id=principal.user_id,
        celery_task_id=str(uuid.uuid4()),
        sent_at=timezone.now(),
    )
    _job_send(job, task)
    return job


def _job_send(job: Job, task: Task, countdown: float | None = None) -> None:
    # The tenant is fixed now, not at publish time, so the message names the schema that holds the row.
    headers = {TENANT_HEADER: connections[WRITER].schema_name, SENT_AT_HEADER: job.sent_at.isoformat()}
    transaction.on_commit(lambda: _job_publish(job, task, headers, countdown), using=WRITER)


def _job_publish(job: Job, task: Task, headers: dict, countdown: float | None) -> None:
    """Runs after the commit, so the job exists whatever the broker says: a broker that cannot be reached must not
    turn the request that made the job into a 500. The job stays queued and the reaper sends it again
    (job_resend_lost)."""
    try:
        # No time limits in the message: the worker's own (the task's, from its settings) apply, not the sender's.
        task.apply_async(
            args=[str(job.pk)],
            task_id=job.celery_task_id,
            headers=headers,
            countdown=countdown,
            time_limit=None,
            soft_time_limit=None,
        )
    except BrokerUnreachable:
        logger.exception(
            "job %s: its message could not be sent; the reaper sends it again once its wait is over", job.pk
        )


def job_start(*, job_id: uuid.UUID | str, queue: str | None = None) -> Job | None:
    """Claim a queued job for this delivery. A redelivered message (acks_late after a lost worker, or a
    visibility timeout) finds it running or finished and gets None: the job never runs twice.

    With `queue`, the tenant may run at most job_max_running(queue) jobs of the kinds routed there: past that
    JobMustWait is raised and the job stays queued. A running job whose heartbeat is stale (its worker was lost; the
    reaper will fail it) does not count. The count and the claim hold a transaction-scoped advisory lock of the
    tenant and queue, so two workers starting the tenant's jobs at once cannot both take the last place.
    """
    now = timezone.now()

    def claim() -> Job | None:
        return _transition(
            job_id=job_id,
            from_statuses=[Job.Status.QUEUED],
            changes={"status": Job.Status.RUNNING, "started_at": now, "heartbeat_at": now},
        )

    if queue is None:
        return claim()
    limit = job_max_running(queue)
    with transaction.atomic(using=WRITER), connections[WRITER].cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"jobs-running:{connections[WRITER].schema_name}:{queue}"]
        )
        alive = Q(heartbeat_at__gte=now - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS))
        running = Job.objects.using(WRITER).filter(alive, status=Job.Status.RUNNING, kind__in=_kinds_on(queue)).count()
        if running >= limit:
            raise JobMustWait(f"the tenant already runs {running} jobs on queue {queue} (at most {limit})")
        return claim()


@cache
def _kinds_on(queue: str) -> frozenset[str]:
    router = current_app.amqp.router
    return frozenset(kind for kind, task in job_tasks().items() if router.route({}, task.name)["queue"].name == queue)


def job_wait_turn(*, job_id: uuid.UUID | str, task: Task, sent_at: datetime | None) -> bool:
    """Send a job that must wait its turn (JobMustWait) again in JOB_WAIT_TURN_SECONDS; it stays queued and holds
    no worker meanwhile. Only the delivery of the job's latest message (the one sent at `sent_at`; None for a message
    without it) does so; False for any other, and for a job no longer queued. Refreshing `sent_at` also keeps the
    reaper from sending a waiting job again (job_resend_lost)."""
    now = timezone.now()
    same_message = Q(sent_at=sent_at) if sent_at else Q()
    if not Job.objects.filter(same_message, pk=job_id, status=Job.Status.QUEUED).update(sent_at=now):
        return False
    _job_send(Job.objects.using(WRITER).get(pk=job_id), task, countdown=settings.JOB_WAIT_TURN_SECONDS)
    return True


def job_report_progress(
    *, job: Job, done: int, total: int | None = None, counters: dict | None = None, message: str | None = None
) -> Job:
    """Record progress on `job` (the instance the runner handed to the work).

    Written at most once per JOB_PROGRESS_MIN_INTERVAL_SECONDS, and always when `done` reaches the total;
    a skipped report still updates the instance, and job_finish writes it. Each write also reads the cancel
    flag back, so running work notices a cancel within the interval at no extra cost: JobCancelled is raised.
    `counters` are merged into the job's counters. A job past its time limit gets JobPastTimeLimit.
    """
    job.progress_done = done
    if total is not None:
        job.progress_total = total
    if counters:
        job.counters = {**job.counters, **counters}
    if message is not None:
        job.message = message
    now = timezone.now()
    limit = job_time_limit(job.kind)
    if job.started_at and now - job.started_at > timedelta(seconds=limit.soft_seconds):
        raise JobPastTimeLimit(limit.soft_error())
    reached_total = job.progress_total is not None and done >= job.progress_total
    interval = timedelta(seconds=settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS)
    if not reached_total and job.progress_at and now - job.progress_at < interval:
        return job
    written = _transition(
        job_id=job.pk,
        from_statuses=[Job.Status.RUNNING],
        changes={
            "progress_done": job.progress_done,
            "progress_total": job.progress_total,
            "counters": job.counters,
            "message": job.message,
            "progress_at": now,
            "heartbeat_at": now,
        },
    )
    if written is None:
        raise JobNoLongerRunning(f"job {job.pk} is no longer running")
    job.progress_at, job.revision, job.cancel_requested_at = now, written.revision, written.cancel_requested_at
    if written.cancel_requested_at:
        raise JobCancelled(f"job {job.pk}: cancel requested at {written.cancel_requested_at.isoformat()}")
    return job


def job_heartbeat(*, job_id: uuid.UUID | str) -> bool:
    """The running job's worker is alive; False once the job is no longer running. Not an event for clients."""
    return bool(Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now()))


def _job_end(*, job: Job, status: str, error: str = "") -> Job:
    """End a running job with its latest progress; if something else ended it first, that outcome stands."""
    ended = _transition(
        job_id=job.pk,
        from_statuses=[Job.Status.RUNNING],
        changes={
            "status": status,
            "error": error,
            "finished_at": timezone.now(),
            "progress_done": job.progress_done,
            "progress_total": job.progress_total,
            "counters": job.counters,
            "message": job.message,
        },
    )
    return ended or Job.objects.using(WRITER).get(pk=job.pk)


def job_finish(*, job: Job) -> Job:
    return _job_end(job=job, status=Job.Status.SUCCEEDED)


def job_fail(*, job: Job, error: str) -> Job:
    return _job_end(job=job, status=Job.Status.FAILED, error=error)


def job_mark_cancelled(*, job: Job) -> Job:
    """The work stopped on a cancel request."""
    return _job_end(job=job, status=Job.Status.CANCELLED)


def job_request_cancel(*, job: Job) -> Job:
    """A queued job is cancelled at once (its message will find it taken); a running one is asked to stop and
    ends as cancelled at its next progress write."""
    now = timezone.now()
    cancelled = _transition(
        job_id=job.pk,
        from_statuses=[Job.Status.QUEUED],
        changes={
            "status": Job.Status.CANCELLED,
            "cancel_requested_at": now,
            "finished_at": now,
        },
    )
    requested = cancelled or _transition(
        job_id=job.pk,
        from_statuses=[Job.Status.RUNNING],
        changes={"cancel_requested_at": now},
        extra_filter=Q(cancel_requested_at__isnull=True),
    )
    if requested:
        return requested
    current = Job.objects.using(WRITER).get(pk=job.pk)
    if current.status in TERMINAL_STATUSES:
        raise Conflict(
            f"Job {job.pk} has already {current.status}; there is nothing to cancel.", {"status": current.status}
        )
    return current


def job_fail_stale(*, now: datetime | None = None) -> list[Job]:
    """Fail this tenant's running jobs whose worker stopped heartbeating (killed, OOM, lost host).

    A worker heartbeats every JOB_HEARTBEAT_SECONDS while a job runs; once its last heartbeat is older than
    JOB_STALE_AFTER_SECONDS the job is failed here. A redelivered message for it then finds it taken.
    A job that ran past its hard time limit had its worker process killed by Celery: its error says so.
    """
    now = now or timezone.now()
    stale_after = settings.JOB_STALE_AFTER_SECONDS
    is_stale = Q(heartbeat_at__lt=now - timedelta(seconds=stale_after))
    stale = Job.objects.using(WRITER).filter(is_stale, status=Job.Status.RUNNING)
    failed = []
    for job_id, kind, started_at in stale.values_list("pk", "kind", "started_at"):
        limit = job_time_limit(kind)
        if started_at and now - started_at >= timedelta(seconds=limit.hard_seconds):
            error = limit.hard_error()
        else:
            error = (
                f"The worker running this job was lost: no heartbeat for more than {stale_after:g}s. "
                f"The job was stopped and will not be retried."
            )
        job = _transition(
            job_id=job_id,
            from_statuses=[Job.Status.RUNNING],
            extra_filter=is_stale,
            changes={
                "status": Job.Status.FAILED,
                "finished_at": now,
                "error": error,
            },
        )
        if job:
            failed.append(job)
    return failed


def job_resend_lost(*, now: datetime | None = None) -> list[Job]:
    """Send again the message of this tenant's queued jobs that no worker has claimed for a while.

    A message can be lost between the commit and a worker (a publish that failed, a broker restarted without its
    queue), which left the job queued for ever. But a queued job may also be waiting behind long ones, and then a
    re-send is a duplicate: harmless (job_start claims a job once) but a place in the queue. So a job is sent again
    JOB_RESEND_AFTER_SECONDS after its last send, and the wait doubles with each re-send: a job that waits hours
    behind a training adds a handful of messages, not one per sweep. `sent_at` guards the update, so two sweeps
    never both re-send.
    """
    now = now or timezone.now()
    wait = timedelta(seconds=settings.JOB_RESEND_AFTER_SECONDS)
    tasks = job_tasks()
    # The first bound is the partial index's range; the second, each job's doubled wait, keeps the sweep from reading
    # the jobs that are queued but not due.
    doubled_wait = ExpressionWrapper(Value(wait) * Power(2, F("resends")), output_field=DurationField())
    due = (
        Job.objects.using(WRITER)
        .filter(status=Job.Status.QUEUED, sent_at__lt=now - wait)
        .filter(sent_at__lt=Value(now, output_field=DateTimeField()) - doubled_wait, kind__in=list(tasks))
    )
    resent = []
    for job_id, kind, sent_at in due.values_list("pk", "kind", "sent_at"):
        with transaction.atomic(using=WRITER):
            job = _transition(
                job_id=job_id,
                from_statuses=[Job.Status.QUEUED],
                extra_filter=Q(sent_at=sent_at),
                changes={"sent_at": now, "resends": F("resends") + 1},
            )
            if job:
                _job_send(job, tasks[kind])
                resent.append(job)
    return resent
