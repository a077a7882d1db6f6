import pytest

from jobs.models import Job
from jobs.services import job_create, job_start
from jobs.tasks import COUNT_JOB_KIND
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db


def _job_in(schema: str, principal, **changes) -> Job:
    with tenant_scope(schema):
        job = job_create(principal=principal, kind=COUNT_JOB_KIND, params={"steps": 2, "delay_seconds": 0})
        Job.objects.filter(pk=job.pk).update(**changes)
        return job


def test_editor_starts_the_count_job_and_reads_it_finished(
    make_token, api_client, celery_eager, django_capture_on_commit_callbacks
):
    # given
    client = api_client(make_token(TENANT_A))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post("/api/v1/jobs/", {"kind": "count", "steps": 3, "delay_seconds": 0}, format="json")
    fetched = client.get(f"/api/v1/jobs/{started.json()['id']}")
    # then
    assert started.status_code == 201, started.content
    assert started.json()["status"] == "queued" and started.json()["params"] == {"steps": 3, "delay_seconds": 0.0}
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "succeeded"
    assert fetched.json()["progress"] == {"done": 3, "total": 3}


def test_start_names_the_field_of_an_unknown_kind(make_token, api_client):
    response = api_client(make_token(TENANT_A)).post("/api/v1/jobs/", {"kind": "mine-bitcoin"}, format="json")
    assert response.status_code == 400
    assert "kind" in response.json()["extra"]["fields"]


def test_the_count_demo_job_is_a_400_where_demo_jobs_are_off(make_token, api_client, settings):
    # given a deployment without demo jobs (production: tests/test_settings.py checks it has none)
    settings.DEMO_JOBS = False
    # when
    response = api_client(make_token(TENANT_A)).post("/api/v1/jobs/", {"kind": "count", "steps": 1}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["extra"]["fields"] == {
        "kind": ["The 'count' demo job runs only where MLOPS_ENV is development or test."]
    }
    with tenant_scope(TENANT_A):
        assert not Job.objects.filter(kind="count").exists()


def test_viewer_can_read_but_not_start_or_cancel(make_token, api_client, principal):
    # given
    job = _job_in(TENANT_A, principal)
    client = api_client(make_token(TENANT_A, role="viewer"))
    # when
    fetched = client.get(f"/api/v1/jobs/{job.pk}")
    started = client.post("/api/v1/jobs/", {"kind": "count"}, format="json")
    cancelled = client.post(f"/api/v1/jobs/{job.pk}/cancel")
    # then
    assert fetched.status_code == 200
    assert started.status_code == 403 and "read-only" in started.json()["message"]
    assert cancelled.status_code == 403
    with tenant_scope(TENANT_A):
        assert Job.objects.get(pk=job.pk).cancel_requested_at is None


def test_list_pages_by_cursor_through_the_workspace_jobs_only(make_token, api_client, principal):
    # given three jobs in ws-1, one in another workspace
    mine = [_job_in(TENANT_A, principal) for _ in range(3)]
    other_workspace = _job_in(TENANT_A, principal, workspace_id="ws-2")
    client = api_client(make_token(TENANT_A, workspace="ws-1"))
    # when
    first = client.get("/api/v1/jobs/", {"page_size": 2}).json()
    second = client.get("/api/v1/jobs/", {"page_size": 2, "cursor": first["next_cursor"]}).json()
    # then, newest first, each job once
    listed = [job["id"] for job in first["results"] + second["results"]]
    assert listed[:3] == [str(job.pk) for job in reversed(mine)]
    assert str(other_workspace.pk) not in listed
    assert len(first["results"]) == 2 and first["next_cursor"]


def test_another_tenants_job_does_not_exist_for_the_caller(make_token, api_client, principal):
    # given
    job_of_b = _job_in(TENANT_B, principal)
    client = api_client(make_token(TENANT_A))
    # when
    fetched = client.get(f"/api/v1/jobs/{job_of_b.pk}")
    cancelled = client.post(f"/api/v1/jobs/{job_of_b.pk}/cancel")
    # then
    assert fetched.status_code == 404 and cancelled.status_code == 404
    with tenant_scope(TENANT_B):
        assert Job.objects.get(pk=job_of_b.pk).cancel_requested_at is None


def test_cancel_asks_a_running_job_to_stop_and_refuses_a_finished_one(make_token, api_client, principal):
    # given
    client = api_client(make_token(TENANT_A))
    running = _job_in(TENANT_A, principal)
    with tenant_scope(TENANT_A):
        job_start(job_id=running.pk)
    finished = _job_in(TENANT_A, principal, status=Job.Status.SUCCEEDED)
    # when
    requested = client.post(f"/api/v1/jobs/{running.pk}/cancel")
    again = client.post(f"/api/v1/jobs/{running.pk}/cancel")
    refused = client.post(f"/api/v1/jobs/{finished.pk}/cancel")
    # then the running job is asked to stop (its work ends it at the next progress write)
    assert requested.status_code == 200
    assert requested.json()["status"] == "running" and requested.json()["cancel_requested_at"]
    assert again.status_code == 200 and again.json()["cancel_requested_at"] == requested.json()["cancel_requested_at"]
    assert refused.status_code == 409 and refused.json()["extra"] == {"status": "succeeded"}
