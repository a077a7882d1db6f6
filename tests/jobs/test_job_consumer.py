"""The consumer through the whole ASGI application (token middleware, routing) on the in-memory channel layer."""

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from jobs.events import job_group_name
from jobs.models import Job
from jobs.services import job_create, job_finish, job_report_progress, job_start
from jobs.tasks import COUNT_JOB_KIND
from mlops.asgi import application
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.websocket_contract import job_message

# Committed data: database_sync_to_async closes connections around each call, which no test transaction survives.
# Reads may go to the reader, a mirror of the test database.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "reader"])


class WebsocketClient(ApplicationCommunicator):
    """The part of channels' WebsocketCommunicator these tests use (channels.testing imports daphne, not installed)."""

    def __init__(self, path: str, *, query: str = "", subprotocols: tuple[str, ...] = ()):
        super().__init__(
            application,
            {
                "type": "websocket",
                "path": path,
                "query_string": query.encode(),
                "headers": [],
                "subprotocols": list(subprotocols),
            },
        )

    async def connect(self) -> dict:
        await self.send_input({"type": "websocket.connect"})
        return await self.receive_output(timeout=5)

    async def receive_json(self) -> dict:
        message = await self.receive_output(timeout=5)
        assert message["type"] == "websocket.send", message
        return job_message(message["text"])


def _in_tenant_a(service, **kwargs):
    with tenant_scope(TENANT_A):
        return service(**kwargs)


in_tenant_a = database_sync_to_async(_in_tenant_a)


@pytest.fixture
def running_job(committed_tenants, principal, settings):
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 0
    with tenant_scope(TENANT_A):
        job = job_create(principal=principal, kind=COUNT_JOB_KIND, params={"steps": 2, "delay_seconds": 0})
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


def test_a_user_past_its_open_websockets_is_closed_with_4429_until_one_closes(running_job, make_token, settings):
    # given the Redis channel layer (the settings' own) and a cap of two sockets per user
    from mlops import settings as configured

    settings.CHANNEL_LAYERS = configured.CHANNEL_LAYERS
    settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER = 2
    token, other_user = make_token(TENANT_A, workspace="ws-1"), make_token(TENANT_A, workspace="ws-1")
    path = f"/ws/jobs/{running_job.pk}/"

    async def scenario():
        first, second = WebsocketClient(path, query=f"token={token}"), WebsocketClient(path, query=f"token={token}")
        opened = [await first.connect(), await second.connect()]
        await first.receive_json(), await second.receive_json()
        # when a third opens
        third = WebsocketClient(path, query=f"token={token}")
        refused = [await third.connect(), await third.receive_output()]
        others = WebsocketClient(path, query=f"token={other_user}")
        other_opened = await others.connect()
        # and once one of the two has closed, a new one opens
        await first.send_input({"type": "websocket.disconnect", "code": 1000})
        await first.wait(timeout=5)
        fourth = WebsocketClient(path, query=f"token={token}")
        reopened = await fourth.connect()
        for communicator in (second, others, fourth):
            await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
            await communicator.wait(timeout=5)
        return opened, refused, other_opened, reopened

    opened, refused, other_opened, reopened = async_to_sync(scenario)()
    # then
    assert [message["type"] for message in opened] == ["websocket.accept"] * 2
    assert refused[0]["type"] == "websocket.accept"  # accepted only to carry the reason
    assert refused[1]["type"] == "websocket.close" and refused[1]["code"] == 4429
    assert "WEBSOCKET_MAX_CONNECTIONS_PER_USER" in refused[1]["reason"]
    assert other_opened["type"] == "websocket.accept"
    assert reopened["type"] == "websocket.accept"


def test_a_redis_outage_closes_the_handshake_with_4503_and_a_retry_works(running_job, make_token, settings):
    # given the channel layer's Redis cannot be reached (nothing listens on port 9 of loopback)
    from mlops import settings as configured

    down = {"hosts": [{"address": "redis://127.0.0.1:9/0", "socket_connect_timeout": 1}], "prefix": "mlops:channels"}
    settings.CHANNEL_LAYERS = {"default": {**configured.CHANNEL_LAYERS["default"], "CONFIG": down}}
    token = make_token(TENANT_A, workspace="ws-1")
    path = f"/ws/jobs/{running_job.pk}/"

    async def connect_once():
        communicator = WebsocketClient(path, query=f"token={token}")
        accepted = await communicator.connect()
        return communicator, accepted, await communicator.receive_output(timeout=5)

    # when a client connects
    _, accepted, refused = async_to_sync(connect_once)()
    # then it is told why and when to come back, instead of a failed (500) handshake
    assert accepted["type"] == "websocket.accept"  # accepted only to carry the reason
    assert refused["type"] == "websocket.close" and refused["code"] == 4503
    assert "reconnect" in refused["reason"]

    # and once Redis is back, the same client's retry gets the snapshot
    settings.CHANNEL_LAYERS = configured.CHANNEL_LAYERS

    async def retry():
        communicator, accepted, snapshot = await connect_once()
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(timeout=5)
        return accepted, snapshot

    accepted, snapshot = async_to_sync(retry)()
    assert accepted["type"] == "websocket.accept"
    assert job_message(snapshot["text"])["event"] == "snapshot"
