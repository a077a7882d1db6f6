"""Job events on the channel layer: one group per job, named with its tenant so no group spans tenants."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

JOB_UPDATE_EVENT = "job.update"


def job_group_name(*, tenant_schema: str, job_id) -> str:
    return f"job.{tenant_schema}.{job_id}"


def job_broadcast(*, tenant_schema: str, state: dict) -> None:
    """Send a job's state (jobs.state.job_state) to its websocket clients; best effort, they re-read the row."""
    group = job_group_name(tenant_schema=tenant_schema, job_id=state["id"])
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": JOB_UPDATE_EVENT, "job": state})
    except Exception:  # a channel layer outage must not fail the job whose state is already committed
        logger.warning(
            "could not send job %s revision %s to its websocket group", state["id"], state["revision"], exc_info=True
        )
