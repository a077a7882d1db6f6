"""`ws/jobs/<id>/`: the job's current state first, then every change to it, in order, until it ends.

Every message is {"event": "snapshot" | "update", "job": <the job as REST shows it>}. The server closes
the socket (1000) after a finished state. A client that reconnects gets a fresh snapshot. With the channel
layer (Redis) down, the handshake is accepted and closed with 4503: a retry once it is back works.
docs/websocket.md is the contract, with a JSON Schema per message.
"""

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from jobs.events import job_group_name
from jobs.models import TERMINAL_STATUSES
from jobs.selectors import job_get
from jobs.state import job_state
from mlops.db_routing import tenant_reads_see_writer
from mlops.exceptions import ApplicationError
from tenancy.context import tenant_scope
from tenancy.websocket_auth import BEARER_SUBPROTOCOL, CLOSE_CODES

logger = logging.getLogger(__name__)

NORMAL_CLOSURE = 1000
CHANNEL_LAYER_DOWN = "Job updates are unavailable for now; read the job over REST and reconnect shortly."


def _load_job_state(*, principal, tenant_schema: str, job_id) -> dict:
    """Read from the writer (websockets are never let onto the reader), so it may be newer than the position the job
    recorded: record the writer's own before the state is sent, or a REST read could show an older one."""
    with tenant_scope(tenant_schema):
        state = job_state(job_get(principal=principal, job_id=job_id))
    tenant_reads_see_writer(tenant_schema=tenant_schema)
    return state


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    group_name: str | None = None
    # The newest revision sent; older events (already in the snapshot) are dropped.
    sent_revision = -1

    async def connect(self):
        principal, tenant_schema = self.scope["principal"], self.scope["tenant_schema"]
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        subprotocol = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in (self.scope.get("subprotocols") or []) else None
        load = database_sync_to_async(_load_job_state)
        try:
            await load(principal=principal, tenant_schema=tenant_schema, job_id=job_id)
        except ApplicationError as error:
            # Accept then close, so the client sees why (a rejected handshake carries no reason).
            await self.accept(subprotocol)
            await self.close(code=CLOSE_CODES.get(error.status_code, 4400), reason=error.message[:120])
            return
        # The group is named with the caller's tenant, so it only ever carries that tenant's job.
        group_name = job_group_name(tenant_schema=tenant_schema, job_id=job_id)
        try:
            await self.channel_layer.group_add(group_name, self.channel_name)
        except Exception:  # the channel layer (Redis) is down: an expected outage, closed with 4503, not a 500
            logger.warning("websocket for job %s refused: the channel layer cannot be reached", job_id, exc_info=True)
            await self.accept(subprotocol)
            await self.close(code=CLOSE_CODES[503], reason=CHANNEL_LAYER_DOWN)
            return
        self.group_name = group_name
        # Read again after joining: a change made between the two reads arrives as an event and is not lost.
        snapshot = await load(principal=principal, tenant_schema=tenant_schema, job_id=job_id)
        await self.accept(subprotocol)
        await self._send_state("snapshot", snapshot)

    async def disconnect(self, code):
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Clients only listen; whatever they send is ignored."""

    async def job_update(self, event):
        if event["job"]["revision"] > self.sent_revision:
            await self._send_state("update", event["job"])

    async def _send_state(self, kind: str, job: dict) -> None:
        self.sent_revision = job["revision"]
        await self.send_json({"event": kind, "job": job})
        if job["status"] in TERMINAL_STATUSES:
            await self.close(code=NORMAL_CLOSURE)
