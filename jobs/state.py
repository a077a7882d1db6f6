"""A job as clients see it, as plain JSON-ready data: the REST body (jobs.serializers.JobOutputSerializer returns
it) and every websocket message (jobs.services, jobs.consumers), so both mirror the row alike. Plain types only: the
channel layer serialises with msgpack, which knows no UUID or datetime."""

from datetime import datetime

from django.utils import timezone

from jobs.models import Job


def _moment(value: datetime | None) -> str | None:
    # As DRF writes a datetime: in the current time zone, ISO 8601, with UTC written "Z".
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def job_state(job: Job) -> dict:
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": str(job.status),
        "cancel_requested_at": _moment(job.cancel_requested_at),
        "progress": {"done": job.progress_done, "total": job.progress_total},
        "counters": job.counters,
        "message": job.message,
        "error": job.error,
        "params": job.params,
        "workspace_id": job.workspace_id,
        "owner_id": job.owner_id,
        "celery_task_id": job.celery_task_id,
        "revision": job.revision,
        "created_at": _moment(job.created_at),
        "started_at": _moment(job.started_at),
        "finished_at": _moment(job.finished_at),
        "heartbeat_at": _moment(job.heartbeat_at),
    }
