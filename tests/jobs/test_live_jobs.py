"""Jobs with the real things: a Celery worker on Redis, uvicorn serving the ASGI app, the Redis channel layer.

The job is started over REST on the ASGI server, so the message, its tenant header and the worker's
tenant switch are all the production ones.
"""

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import connect

from jobs.models import Job
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B
from tests.live_services import wait_until
from tests.websocket_contract import job_message

# Committed data, so the subprocesses see it; reads here may go to the reader (a mirror of the test database).
pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _start_count_job(server, token: str, *, steps: int, delay_seconds: float) -> dict:
    response = httpx.post(
        f"{server.url}/api/v1/jobs/",
        headers=_bearer(token),
        timeout=10,
        json={"kind": "count", "steps": steps, "delay_seconds": delay_seconds},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _get_job(server, token: str, job_id: str) -> dict:
    response = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=_bearer(token), timeout=10)
    return response.json() if response.status_code == 200 else {}


def _messages_until_closed(websocket, *, timeout: float) -> list[dict]:
    messages = []
    try:
        while True:
            messages.append(job_message(websocket.recv(timeout=timeout)))
    except ConnectionClosedOK:
        return messages


def _close_code(url: str, **connect_options) -> int:
    with connect(url, open_timeout=10, **connect_options) as websocket, pytest.raises(ConnectionClosed) as closed:
        websocket.recv(timeout=10)
    return closed.value.rcvd.code


def test_progress_reaches_a_real_websocket_in_order_until_the_job_succeeds(live_asgi_server, live_worker, make_token):
    # given
    token = make_token(TENANT_A)
    steps = 8
    job = _start_count_job(live_asgi_server, token, steps=steps, delay_seconds=0.3)
    # when
    with connect(
        f"{live_asgi_server.ws_url}/ws/jobs/{job['id']}/", subprotocols=["bearer", token], open_timeout=10
    ) as websocket:
        subprotocol = websocket.subprotocol
        messages = _messages_until_closed(websocket, timeout=15)
    # then: the state first, then every write once and in order (revisions have no gap), ending succeeded
    states = [message["job"] for message in messages]
    revisions = [state["revision"] for state in states]
    assert subprotocol == "bearer"
    assert [message["event"] for message in messages] == ["snapshot"] + ["update"] * (len(messages) - 1)
    assert revisions == list(range(revisions[0], revisions[0] + len(states)))
    # 1 start + one write per step (each step is slower than the progress throttle) + 1 finish
    assert revisions[-1] == steps + 2
    assert states[-1]["status"] == "succeeded" and states[-1]["progress"] == {"done": steps, "total": steps}
    watched_running = [state["progress"]["done"] for state in states if state["status"] == "running"]
    assert len(watched_running) >= 3 and watched_running == sorted(watched_running)
    # the worker ran it in tenant A (from the message's header), with the job id in its log lines
    with tenant_scope(TENANT_A):
        assert Job.objects.get(pk=job["id"]).status == Job.Status.SUCCEEDED
    assert f'"job_id": "{job["id"]}"' in live_worker.log()


def test_a_websocket_stays_open_through_a_quiet_spell_longer_than_the_channel_layer_wait(
    live_asgi_server, live_worker, make_token
):
    """The Redis channel layer blocks 5 s per receive; redis-py 8's default 5 s read timeout used to kill the
    socket of every job that stayed quiet that long."""
    token = make_token(TENANT_A)
    job = _start_count_job(live_asgi_server, token, steps=1, delay_seconds=6.5)
    with connect(f"{live_asgi_server.ws_url}/ws/jobs/{job['id']}/?token={token}", open_timeout=10) as websocket:
        messages = _messages_until_closed(websocket, timeout=15)
    assert messages[-1]["job"]["status"] == "succeeded"


def test_cancel_over_rest_stops_the_running_job_and_frees_the_worker(live_asgi_server, live_worker, make_token):
    # given a job that would count for 20 s
    token = make_token(TENANT_A)
    job = _start_count_job(live_asgi_server, token, steps=200, delay_seconds=0.1)
    wait_until(
        lambda: _get_job(live_asgi_server, token, job["id"]).get("progress", {}).get("done", 0) >= 2,
        timeout=20,
        what="the job to be counting",
        logs_of=(live_worker, live_asgi_server),
    )
    # when
    response = httpx.post(f"{live_asgi_server.url}/api/v1/jobs/{job['id']}/cancel", headers=_bearer(token), timeout=10)
    # then
    assert response.status_code == 200, response.text
    assert response.json()["cancel_requested_at"]
    cancelled = wait_until(
        lambda: (state := _get_job(live_asgi_server, token, job["id"])) and state["status"] == "cancelled" and state,
        timeout=10,
        what="the job to stop",
        logs_of=(live_worker,),
    )
    assert 2 <= cancelled["progress"]["done"] < 200 and cancelled["finished_at"]
    # the single worker process is free again: a new job runs at once instead of after the old one's 20 s
    after = _start_count_job(live_asgi_server, token, steps=1, delay_seconds=0)
    wait_until(
        lambda: _get_job(live_asgi_server, token, after["id"]).get("status") == "succeeded",
        timeout=10,
        what="the next job to run",
        logs_of=(live_worker,),
    )


def test_a_websocket_only_opens_on_a_job_of_the_callers_tenant_with_a_valid_token(
    live_asgi_server, make_token, principal
):
    # given a job of tenant B (its row alone: no worker needed)
    with tenant_scope(TENANT_B):
        job_of_b = Job.objects.create(
            kind="count", workspace_id="ws-1", owner_id=principal.user_id, celery_task_id="not-sent"
        )
    url = f"{live_asgi_server.ws_url}/ws/jobs/{job_of_b.pk}/"
    # when / then
    assert _close_code(url, subprotocols=["bearer", make_token(TENANT_A)]) == 4404
    assert _close_code(f"{url}?token={make_token(TENANT_A)}") == 4404
    assert _close_code(url) == 4401
    assert _close_code(f"{url}?token=not-a-jwt") == 4401
    # while tenant B's own token sees it
    with connect(f"{url}?token={make_token(TENANT_B)}", open_timeout=10) as websocket:
        snapshot = job_message(websocket.recv(timeout=10))
    assert snapshot["event"] == "snapshot" and snapshot["job"]["id"] == str(job_of_b.pk)
