"""Which server answers each query: the replica for plain reads; the primary for writes, for everything after a
write in the same request, inside transactions, and for the same user's next requests (read-your-writes).
`server_log` asks every query's own connection `pg_is_in_recovery()`: True is the replica."""

import time

import pytest
from django.db import connections, transaction
from django_tenants.utils import schema_context

from mlops import db_routing
from mlops.db_routing import READER, WRITER
from projects.models import Project
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B
from tests.factories import project_make

PROJECTS = "projects_project"


def _seed_project(name: str, tenant: str = TENANT_A) -> Project:
    """Written outside any request, so to the writer."""
    with tenant_scope(tenant):
        return project_make(name=name)


def test_plain_read_goes_to_the_replica(make_token, api_client, replica_pair, server_log):
    # given
    project = _seed_project("Replicated")
    replica_pair.wait_for_replay()
    server_log.queries.clear()
    # when
    response = api_client(make_token(TENANT_A)).get(f"/api/v1/projects/{project.pk}")
    # then
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Replicated"
    assert server_log.answered_by_replica(PROJECTS) == {True}


def test_a_users_write_pins_their_next_requests_to_the_writer_and_nobody_elses(
    make_token, api_client, replica_pair, server_log, settings
):
    settings.READ_YOUR_WRITES_SECONDS = 2
    author = api_client(make_token(TENANT_A, workspace="ws-1"))
    colleague = api_client(make_token(TENANT_A, workspace="ws-1"))

    created = author.post("/api/v1/projects/", {"name": "Fresh"}, format="json")
    assert created.status_code == 201, created.content
    assert server_log.answered_by_replica(PROJECTS) == {False}
    detail = f"/api/v1/projects/{created.json()['id']}"

    # the author's next request, within READ_YOUR_WRITES_SECONDS, reads from the writer
    server_log.queries.clear()
    own_read = author.get(detail)
    assert own_read.status_code == 200 and own_read.json()["name"] == "Fresh"
    assert server_log.answered_by_replica(PROJECTS) == {False}

    # another user of the same workspace is not pinned
    replica_pair.wait_for_replay()
    server_log.queries.clear()
    assert colleague.get(detail).status_code == 200
    assert server_log.answered_by_replica(PROJECTS) == {True}

    # once READ_YOUR_WRITES_SECONDS have passed, the author reads from the replica again
    time.sleep(settings.READ_YOUR_WRITES_SECONDS + 0.1)
    server_log.queries.clear()
    assert author.get(detail).status_code == 200
    assert server_log.answered_by_replica(PROJECTS) == {True}


def test_a_sub_second_read_your_writes_window_still_pins(make_token, api_client, server_log, settings):
    # Redis keeps whole seconds, and a key set to expire in 0 s is deleted at once.
    settings.READ_YOUR_WRITES_SECONDS = 0.5
    author = api_client(make_token(TENANT_A))
    created = author.post("/api/v1/projects/", {"name": "Half a second"}, format="json")
    assert created.status_code == 201, created.content
    server_log.queries.clear()
    assert author.get(f"/api/v1/projects/{created.json()['id']}").status_code == 200
    assert server_log.answered_by_replica(PROJECTS) == {False}


def _orm_write():
    project_make(name="orm")


def _explicit_writer_write():
    Project.objects.using(WRITER).create(workspace_id="ws-1", name="explicit", created_by="test")


def _raw_sql_write():
    with connections[WRITER].cursor() as cursor:
        cursor.execute(
            "INSERT INTO projects_project (workspace_id, name, description, created_by, created_at, "
            "updated_at) VALUES ('ws-1', 'raw', '', 'test', now(), now())"
        )


@pytest.mark.parametrize(
    "write", [_orm_write, _explicit_writer_write, _raw_sql_write], ids=["orm", "using-writer", "raw-sql"]
)
def test_every_read_after_a_write_in_the_same_request_goes_to_the_writer(write, replica_pair, server_log):
    replica_pair.wait_for_replay()
    with db_routing.reader_allowed(), tenant_scope(TENANT_A):
        Project.objects.filter(workspace_id="ws-1").count()
        write()
        Project.objects.filter(workspace_id="ws-1").count()
        assert db_routing.is_pinned_to_writer()
    # read, write, read
    assert [query.in_recovery for query in server_log.touching(PROJECTS)] == [True, False, False]
    # the request's pin ends with it: outside requests everything goes to the writer by default
    assert db_routing.is_pinned_to_writer()


def test_reads_inside_a_transaction_go_to_the_writer(replica_pair, server_log):
    with db_routing.reader_allowed(), tenant_scope(TENANT_A):
        with transaction.atomic():
            Project.objects.filter(workspace_id="ws-1").count()
        # nothing was written, so the request is not pinned after the transaction
        Project.objects.filter(workspace_id="ws-1").count()
    assert [query.in_recovery for query in server_log.touching(PROJECTS)] == [False, True]


def test_the_reader_reads_the_callers_tenant_schema(make_token, api_client, replica_pair, server_log):
    # given a project in tenant A only, replayed on the replica
    _seed_project("Acme only", tenant=TENANT_A)
    replica_pair.wait_for_replay()
    server_log.queries.clear()
    # when a user of each tenant lists projects
    acme = api_client(make_token(TENANT_A)).get("/api/v1/projects/")
    globex = api_client(make_token(TENANT_B)).get("/api/v1/projects/")
    # then both lists came from the replica, each from its own tenant's table
    assert acme.status_code == 200 and globex.status_code == 200
    assert "Acme only" in [project["name"] for project in acme.json()["results"]]
    assert "Acme only" not in [project["name"] for project in globex.json()["results"]]
    answered = [(query.in_recovery, query.search_path) for query in server_log.touching(PROJECTS)]
    assert answered == [(True, f"{TENANT_A}, public"), (True, f"{TENANT_B}, public")]


@pytest.mark.parametrize("enter_tenant", [tenant_scope, schema_context], ids=["set_tenant", "set_schema"])
def test_the_reader_connection_follows_the_writers_tenant(enter_tenant, replica_pair):
    with enter_tenant(TENANT_B), connections[READER].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), current_schema()")
        assert cursor.fetchone() == (True, TENANT_B)
    with connections[READER].cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        assert cursor.fetchone() == ("public",)
