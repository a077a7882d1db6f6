"""Reads agree with what the jobs announced, and a new tenant answers at once, while the replica lags on purpose.

`lagging_replica` makes the real streaming replica hold every commit back (recovery_min_apply_delay), so each test
here fails every time on a router that sends the tenant's reads to the replica regardless.
"""

import json
import statistics
import time
import uuid

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from celery.contrib.testing.worker import start_worker

from jobs.models import TERMINAL_STATUSES
from mlops import db_routing
from mlops.celery import app
from tenancy.context import tenant_scope
from tenancy.services import tenant_provision
from tests.conftest import TENANT_A
from tests.factories import project_make
from tests.jobs.test_job_consumer import WebsocketClient

# Far longer than any test here: whatever the replica shows during one is older than the test.
APPLY_DELAY = "30s"
COUNT_QUEUE = "celery"


def _replica_replayed(replica, position) -> bool:
    return replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [position]).fetchone()[0]


@pytest.fixture
def lagging_replica(replica_pair):
    """The replica applies each commit APPLY_DELAY after the primary made it, for this test only."""
    with (
        psycopg.connect(replica_pair.replica.url(), autocommit=True) as replica,
        psycopg.connect(replica_pair.primary.url(), autocommit=True) as primary,
    ):
        replica.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{APPLY_DELAY}'")
        replica.execute("SELECT pg_reload_conf()")
        # The reload reaches the replaying process asynchronously: lagging once a fresh commit stays unapplied.
        deadline = time.monotonic() + 10
        while True:
            (position,) = primary.execute("SELECT txid_current(), pg_current_wal_insert_lsn()").fetchone()[1:]
            time.sleep(0.3)
            if not _replica_replayed(replica, position):
                break
            assert time.monotonic() < deadline, "the replica did not start lagging"
    yield replica_pair
    with psycopg.connect(replica_pair.replica.url(), autocommit=True) as replica:
        replica.execute("ALTER SYSTEM RESET recovery_min_apply_delay")
        replica.execute("SELECT pg_reload_conf()")
    replica_pair.wait_for_replay(timeout=30)


@pytest.fixture(scope="module")
def job_worker(replica_pair):
    """A real Celery worker (in a thread of this process, so on the replica pair) for the count job's queue."""
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(COUNT_QUEUE)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[COUNT_QUEUE], shutdown_timeout=20):
        yield


def _watch_job_and_read_it(*, author, reader, token: str, steps: int) -> list[tuple[dict, dict]]:
    """Start a count job as `author`, and after each websocket message read the job over REST as `reader`."""
    started = author.post("/api/v1/jobs/", {"kind": "count", "steps": steps, "delay_seconds": 0.2}, format="json")
    assert started.status_code == 201, started.content
    job_id = started.json()["id"]

    async def scenario() -> list[tuple[dict, dict]]:
        websocket = WebsocketClient(f"/ws/jobs/{job_id}/", subprotocols=("bearer", token))
        assert (await websocket.connect())["type"] == "websocket.accept"
        seen = []
        while True:
            message = await websocket.receive_output(timeout=20)
            if message["type"] == "websocket.close":
                return seen
            sent = json.loads(message["text"])["job"]
            read = await sync_to_async(reader.get)(f"/api/v1/jobs/{job_id}")
            seen.append((sent, read.json() if read.status_code == 200 else {"status_code": read.status_code}))

    return async_to_sync(scenario)()


def test_a_job_that_ended_on_the_socket_reads_ended_for_another_user(
    lagging_replica, job_worker, make_token, api_client, settings
):
    # given
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 0
    token = make_token(TENANT_A)
    author, colleague = api_client(token), api_client(make_token(TENANT_A))
    # when the socket has said the job ended
    seen = _watch_job_and_read_it(author=author, reader=api_client(token), token=token, steps=2)
    assert seen[-1][0]["status"] == "succeeded"
    # then another user of the tenant, who never wrote anything, reads it ended too
    read = colleague.get(f"/api/v1/jobs/{seen[-1][0]['id']}")
    assert read.status_code == 200, read.content
    assert read.json()["status"] == "succeeded" and read.json()["progress"] == {"done": 2, "total": 2}
    assert read.json()["revision"] == seen[-1][0]["revision"]


def test_no_websocket_message_is_ahead_of_the_next_rest_read(
    lagging_replica, job_worker, make_token, api_client, settings
):
    settings.JOB_PROGRESS_MIN_INTERVAL_SECONDS = 0
    token = make_token(TENANT_A)
    colleague = api_client(make_token(TENANT_A))
    seen = _watch_job_and_read_it(author=api_client(token), reader=colleague, token=token, steps=4)
    # snapshot, start or progress revisions, and the end: each REST read shows that revision or a later one
    assert len(seen) >= 3 and seen[-1][0]["status"] in TERMINAL_STATUSES
    behind = [
        (sent["revision"], read.get("revision", read))
        for sent, read in seen
        if read.get("revision", -1) < sent["revision"]
    ]
    assert behind == []


def test_a_new_tenant_answers_its_first_request_before_the_replica_has_its_schema(
    lagging_replica, make_token, api_client
):
    # given a tenant provisioned on the writer a moment ago (the replica has not replayed its schema)
    schema = f"lag_{uuid.uuid4().hex[:8]}"
    tenant_provision(schema_name=schema, name="Lagging")
    client = api_client(make_token(schema))
    # when / then: no 500 (relation does not exist on the replica), on the first request and the next
    listed = client.get("/api/v1/projects/")
    assert listed.status_code == 200, listed.content
    assert listed.json()["results"] == []
    assert client.get("/api/v1/jobs/").status_code == 200


def test_a_replayed_tenant_position_costs_no_query_and_no_round_trip(
    make_token, api_client, replica_pair, server_log, capsys
):
    # given a project, replayed, and tenant A's recorded position replayed as well
    with tenant_scope(TENANT_A):
        project = project_make(name="Timed")
    client = api_client(make_token(TENANT_A))
    detail = f"/api/v1/projects/{project.pk}"

    def median_ms(repeats: int = 60) -> float:
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            assert client.get(detail).status_code == 200
            timings.append(time.perf_counter() - started)
        return statistics.median(timings) * 1000

    db_routing.redis_client().delete(db_routing._tenant_position_key(TENANT_A))
    replica_pair.wait_for_replay()
    client.get(detail)
    without = median_ms()
    db_routing.tenant_reads_see_writer(tenant_schema=TENANT_A)
    replica_pair.wait_for_replay()
    server_log.queries.clear()
    client.get(detail)  # the first read asks the replica where it is
    first = len(server_log.touching("pg_last_wal_replay_lsn"))
    server_log.queries.clear()
    with_position = median_ms()
    # then the replica answered, and only the first request asked it how far it had replayed
    assert first == 1 and server_log.touching("pg_last_wal_replay_lsn") == []
    assert server_log.answered_by_replica("projects_project") == {True}
    with capsys.disabled():
        print(
            f"\n[routing] GET project, median of 60: {without:.2f} ms without a tenant position, "
            f"{with_position:.2f} ms with one the replica has replayed"
        )
