"""Running domain work as a Job: `@job_task(kind=...)` on `def run(job, **params)` makes the Celery task.

    @job_task(kind="coco-import")
    def import_coco(job, *, dataset_id, upload_key):
        for done, batch in enumerate(batches, 1):
            ...
            job_report_progress(job=job, done=done, total=len(batches))

Start it with `job_create(principal=..., task=import_coco, params={...})`. The task claims the job once
(job_start), heartbeats from a side thread while `run` works, and records the outcome: succeeded when
`run` returns, cancelled when a progress report saw a cancel request, failed with the error otherwise.
"""

import contextvars
import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager

from celery import shared_task
from django.conf import settings
from django.db import connections

from jobs.models import Job
from jobs.services import (
    JobCancelled,
    OWNED_UPLOAD_PARAM,
    JobNoLongerRunning,
    job_fail,
    job_finish,
    job_heartbeat,
    job_mark_cancelled,
    job_start,
)
from mlops.celery import TenantTask
from mlops.db_routing import WRITER
from mlops.observability import bind_log_context, log_context
from tenancy.context import tenant_scope

logger = logging.getLogger(__name__)


def job_task(*, kind: str, **task_options):
    """Register `run` as the Celery task `<module>.<name>` for jobs of `kind`; the message carries only the job id."""

    def register(run: Callable[..., None]):
        def execute(self, job_id: str) -> None:
            job_execute(job_id=job_id, run=run)

        return shared_task(execute, name=f"{run.__module__}.{run.__name__}", base=TenantTask, bind=True,
                           job_kind=kind, **task_options)

    return register


def job_execute(*, job_id: str, run: Callable[..., None]) -> None:
    job = job_start(job_id=job_id)
    if job is None:
        logger.info("job %s is not queued (already taken by another delivery, or cancelled); not running it", job_id)
        return
    outer_log_context = log_context.get()
    bind_log_context(job_id=str(job.pk), job_kind=job.kind)
    try:
        logger.info("job started")
        with _heartbeat(job_id=job.pk):
            job = _run_to_outcome(job, run)
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

    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), name=f"job-heartbeat-{job_id}",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
