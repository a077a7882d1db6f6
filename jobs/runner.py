"""Running domain work as a Job: `@job_task(kind=...)` on `def run(job, **params)` makes the Celery task.

    @job_task(kind="coco-import")
    def import_coco(job, *, dataset_id, upload_key):
        for done, batch in enumerate(batches, 1):
            ...
            job_report_progress(job=job, done=done, total=len(batches))

Start it by its kind, `job_create(principal=..., kind="coco-import", params={...})` (jobs.registry finds the task). The task claims the job once
(job_start), heartbeats from a side thread while `run` works, and records the outcome: succeeded when
`run` returns, cancelled when a progress report saw a cancel request, failed with the error otherwise.

Each kind has a time limit (jobs.limits): Celery's soft limit stops `run` and the job fails saying which setting it
ran past; its hard limit kills a worker process that did not stop, and the reaper fails the job. A job whose tenant
already runs its share of jobs on the task's queue is not claimed: its message is sent again a little later
(job_wait_turn) and the worker is free for other tenants' jobs.
"""

import contextvars
import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections
from django.utils.dateparse import parse_datetime

from jobs.limits import job_time_limit
from jobs.models import Job
from jobs.registry import job_task_register
from jobs.services import (
    OWNED_UPLOAD_PARAM,
    SENT_AT_HEADER,
    JobCancelled,
    JobMustWait,
    JobNoLongerRunning,
    JobPastTimeLimit,
    job_fail,
    job_finish,
    job_heartbeat,
    job_mark_cancelled,
    job_start,
    job_wait_turn,
)
from mlops.celery import TenantTask
from mlops.db_routing import WRITER
from mlops.metrics import count_turn_wait, job_ended, job_started
from mlops.observability import bind_log_context, log_context
from tenancy.context import tenant_scope

logger = logging.getLogger(__name__)


def job_task(*, kind: str, **task_options):
    """Register `run` as the Celery task `<module>.<name>` for jobs of `kind` (in Celery, and under `kind` in
    jobs.registry); the message carries only the job id."""

    def register(run: Callable[..., None]):
        def execute(self, job_id: str) -> None:
            job_execute(job_id=job_id, run=run, task=self)

        limit = job_time_limit(kind)
        task = shared_task(
            execute,
            name=f"{run.__module__}.{run.__name__}",
            base=TenantTask,
            bind=True,
            job_kind=kind,
            soft_time_limit=limit.soft_seconds,
            time_limit=limit.hard_seconds,
            **task_options,
        )
        job_task_register(kind=kind, task=task)
        return task

    return register


def job_execute(*, job_id: str, run: Callable[..., None], task: Task | None = None) -> None:
    """Claim and run the job. Given the delivering `task` (not run eagerly: eager runs have no worker to share),
    the job waits its turn while its tenant runs its share of jobs on the task's queue."""
    queue = None
    if task is not None and not task.request.is_eager:
        queue = task.app.amqp.router.route({}, task.name)["queue"].name
    try:
        job = job_start(job_id=job_id, queue=queue)
    except JobMustWait as waiting:
        sent_at = (task.request.headers or {}).get(SENT_AT_HEADER)
        if job_wait_turn(job_id=job_id, task=task, sent_at=parse_datetime(sent_at) if sent_at else None):
            logger.info("job %s waits its turn: %s", job_id, waiting)
            count_turn_wait(kind=task.job_kind)
        return
    if job is None:
        logger.info("job %s is not queued (already taken by another delivery, or cancelled); not running it", job_id)
        return
    outer_log_context = log_context.get()
    bind_log_context(job_id=str(job.pk), job_kind=job.kind)
    try:
        logger.info("job started")
        job_started(kind=job.kind)
        with _heartbeat(job_id=job.pk):
            job = _run_to_outcome(job, run)
        job_ended(job=job)
        logger.info("job ended %s", job.status, extra={"job_status": job.status})
    finally:
        log_context.set(outer_log_context)


def _run_to_outcome(job: Job, run: Callable[..., None]) -> Job:
    try:
        run(job, **{name: value for name, value in job.params.items() if name != OWNED_UPLOAD_PARAM})
    except JobCancelled:
        return job_mark_cancelled(job=job)
    except JobNoLongerRunning:
        return Job.objects.using(WRITER).get(pk=job.pk)
    except (SoftTimeLimitExceeded, JobPastTimeLimit):
        logger.warning("job stopped at its time limit")
        # The limit may have interrupted a statement half-way: the failure is written on a fresh connection (a test's
        # transaction aside).
        if not connections[WRITER].in_atomic_block:
            connections[WRITER].close()
        return job_fail(job=job, error=job_time_limit(job.kind).soft_error())
    except Exception as error:
        logger.exception("job failed")
        return job_fail(job=job, error=f"{type(error).__name__}: {error}")
    return job_finish(job=job)


@contextmanager
def _heartbeat(*, job_id):
    """Beat every JOB_HEARTBEAT_SECONDS from a side thread, so work that reports rarely is not taken for dead;
    the thread dies with the worker, which is what lets the reaper see a lost job."""
    tenant_schema = connections[WRITER].schema_name
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    with tenant_scope(tenant_schema):
                        if not job_heartbeat(job_id=job_id):
                            return
                except Exception:  # a missed beat is retried; only a dead worker should stop them all
                    logger.warning("job heartbeat not written; retrying", exc_info=True)
        finally:
            connections.close_all()

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name=f"job-heartbeat-{job_id}", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
