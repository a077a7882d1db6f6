"""The consumer through the whole ASGI application (token middleware, routing) on the in-memory channel layer."""

import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from jobs.events import job_group_name
from jobs.models import Job
from jobs.services import job_create, job_finish, job_report_progress, job_start
from jobs.tasks import count_to
from mlops.asgi import application
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A

# Committed data: database_sync_to_async closes connections around each call, which no test transaction survives.
# Reads may go to the reader, a mirror of the test database.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "reader"])


class WebsocketClient(ApplicationCommunicator):
    """The part of channels' WebsocketCommunicator these tests use (channels.testing imports daphne, not installed)."""

    def __init__(self, path: str, *, query: str = "", subprotocols: tuple[str, ...] = ()):
        super().__init__(application, {"type": "websocket", "path": path, "query_string": query.encode(),
                                       "headers": [], "subprotocols": list(subprotocols)})

    async def connect(self) -> dict:
        await self.send_input({"type": "websocket.connect"})
        return await self.receive_output(timeout=5)

    async def receive_json(self) -> dict:
        message = await self.receive_output(timeout=5)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])


def _in_tenant_a(service, **kwargs):
    with tenant_scope(TENANT_A):
        return service(**kwargs)


in_tenant_a = database_sync_to_async(_in_tenant_a)


@pytest.fixture
def running_job(committed_tenants, principal, settings):
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 0
    with tenant_scope(TENANT_A):
        job = job_create(principal=principal, task=count_to, params={"steps": 2, "delay_seconds": 0})
        return job_start(job_id=job.pk)


def test_snapshot_first_then_each_change_in_order_until_the_job_ends(running_job, make_token):
    token = make_token(TENANT_A, workspace="ws-1")

    async def scenario():
        communicator = WebsocketClient(f"/ws/jobs/{running_job.pk}/", subprotocols=("bearer", token))
        accepted = await communicator.connect()
        snapshot = await communicator.receive_json()
        await in_tenant_a(job_report_progress, job=running_job, done=1, total=2)
        first = await communicator.receive_json()
        await in_tenant_a(job_report_progress, job=running_job, done=2, total=2)
        second = await communicator.receive_json()
        await in_tenant_a(job_finish, job=running_job)
        last = await communicator.receive_json()
        closed = await communicator.receive_output()
        return accepted, [snapshot, first, second, last], closed

    accepted, messages, closed = async_to_sync(scenario)()
    assert accepted == {"type": "websocket.accept", "subprotocol": "bearer"}
    assert [message["event"] for message in messages] == ["snapshot", "update", "update", "update"]
    assert [message["job"]["revision"] for message in messages] == [1, 2, 3, 4]
    assert [message["job"]["progress"]["done"] for message in messages] == [0, 1, 2, 2]
    assert messages[-1]["job"]["status"] == "succeeded"
    assert closed == {"type": "websocket.close", "code": 1000}


def test_events_already_in_the_snapshot_are_not_sent_again(running_job, make_token):
    token = make_token(TENANT_A, workspace="ws-1")
    group = job_group_name(tenant_schema=TENANT_A, job_id=running_job.pk)

    async def scenario():
        communicator = WebsocketClient(f"/ws/jobs/{running_job.pk}/", query=f"token={token}")
        await communicator.connect()
        snapshot = await communicator.receive_json()
        # an event that raced the snapshot read: same revision, already shown
        await get_channel_layer().group_send(group, {"type": "job.update", "job": snapshot["job"]})
        nothing_sent = await communicator.receive_nothing(timeout=0.2)
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(timeout=2)
        return snapshot, nothing_sent

    snapshot, nothing_sent = async_to_sync(scenario)()
    assert snapshot["event"] == "snapshot" and snapshot["job"]["status"] == "running"
    assert nothing_sent


def test_a_job_of_another_workspace_is_refused(running_job, make_token):
    token = make_token(TENANT_A, workspace="ws-2")

    async def scenario():
        communicator = WebsocketClient(f"/ws/jobs/{running_job.pk}/", query=f"token={token}")
        return await communicator.connect(), await communicator.receive_output()

    accepted, refused = async_to_sync(scenario)()
    assert accepted["type"] == "websocket.accept"  # accepted only to carry the reason
    assert refused["type"] == "websocket.close" and refused["code"] == 4404  # as for a job that does not exist


def test_a_finished_job_sends_its_snapshot_and_closes(running_job, make_token):
    with tenant_scope(TENANT_A):
        job_finish(job=Job.objects.get(pk=running_job.pk))
    token = make_token(TENANT_A, workspace="ws-1")

    async def scenario():
        communicator = WebsocketClient(f"/ws/jobs/{running_job.pk}/", query=f"token={token}")
        await communicator.connect()
        return await communicator.receive_json(), await communicator.receive_output()

    snapshot, closed = async_to_sync(scenario)()
    assert snapshot["job"]["status"] == "succeeded"
    assert closed == {"type": "websocket.close", "code": 1000}
