import logging
import time

from celery import shared_task
from django_tenants.utils import get_public_schema_name, get_tenant_model

from jobs.models import Job
from jobs.runner import job_task
from jobs.services import job_fail_stale, job_report_progress, job_resend_lost
from mlops.db_routing import WRITER
from mlops.metrics import count_reaper_actions
from tenancy.context import tenant_scope

logger = logging.getLogger(__name__)

COUNT_JOB_KIND = "count"


@job_task(kind=COUNT_JOB_KIND)
def count_to(job: Job, *, steps: int, delay_seconds: float) -> None:
    """The demo job: counts to `steps`, one progress report per step, `delay_seconds` apart."""
    for step in range(1, steps + 1):
        time.sleep(delay_seconds)
        job_report_progress(
            job=job, done=step, total=steps, counters={"counted": step}, message=f"counted {step} of {steps}"
        )


@shared_task(name="jobs.reap_stale_jobs")
def reap_stale_jobs() -> None:
    """Beat runs this every JOB_REAPER_INTERVAL_SECONDS in every active tenant (it carries no tenant itself).

    Bound: a job whose worker dies (kill -9, OOM, lost host) stops heartbeating at once, so it is failed at
    most JOB_STALE_AFTER_SECONDS + JOB_REAPER_INTERVAL_SECONDS after the death (60 s + 15 s = 75 s by default),
    plus the time this sweep takes. The same sweep sends again the messages of jobs left queued
    (job_resend_lost). The sweep needs a free worker process: while every process is busy with a
    long job it waits in the queue (and expires after one interval, so sweeps never pile up).
    """
    Tenant = get_tenant_model()
    tenants = (
        Tenant.objects.using(WRITER).filter(status=Tenant.Status.ACTIVE).exclude(schema_name=get_public_schema_name())
    )
    for schema_name in tenants.values_list("schema_name", flat=True):
        try:
            with tenant_scope(schema_name):
                failed = job_fail_stale()
                resent = job_resend_lost()
        except Exception:  # one broken tenant must not stop the sweep of the others
            logger.exception("reaping stale jobs failed in tenant %s", schema_name)
            continue
        count_reaper_actions(failed=len(failed), resent=len(resent))
        for job in failed:
            logger.warning(
                "job %s failed: its worker was lost", job.pk, extra={"tenant": schema_name, "job_id": str(job.pk)}
            )
        for job in resent:
            logger.warning(
                "job %s sent again (re-send %d): no worker claimed it since its last send",
                job.pk,
                job.resends,
                extra={"tenant": schema_name, "job_id": str(job.pk)},
            )
