import pytest

from datasets.models import DataRow, Dataset, Label, OntologyClass
from jobs.models import Job
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import project_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def datasets_url(make_token, api_client):
    """An editor's client and the datasets URL of a new project in tenant A."""
    with tenant_scope(TENANT_A):
        project = project_make()
    return api_client(make_token(TENANT_A)), f"/api/v1/projects/{project.pk}/datasets/"


def test_dataset_crud(datasets_url):
    client, url = datasets_url
    created = client.post(url, {"name": "street", "description": "cams"}, format="json")
    assert created.status_code == 201, created.content
    dataset = created.json()
    assert (dataset["datarow_count"], dataset["status"]) == (0, "ready")
    assert client.get(url).json()["results"][0]["name"] == "street"
    renamed = client.patch(f"{url}{dataset['id']}", {"name": "street-2"}, format="json")
    assert renamed.json()["name"] == "street-2"
    duplicate = client.post(url, {"name": "street-2"}, format="json")
    assert duplicate.status_code == 409
    assert "name" in duplicate.json()["extra"]["fields"]


def test_unknown_project_or_dataset_is_404(datasets_url):
    client, url = datasets_url
    assert client.get("/api/v1/projects/999999/datasets/").status_code == 404
    assert client.get(f"{url}999999").status_code == 404


def test_delete_hides_the_dataset_at_once_and_a_job_removes_its_rows(
    datasets_url, celery_eager, django_capture_on_commit_callbacks
):
    client, url = datasets_url
    dataset = client.post(url, {"name": "doomed"}, format="json").json()
    with tenant_scope(TENANT_A):
        row = DataRow.objects.create(dataset_id=dataset["id"], external_id="a", uri="s3://b/a.jpg")
        cat = OntologyClass.objects.create(project_id=Dataset.objects.get(pk=dataset["id"]).project_id, name="cat")
        Label.objects.create(datarow=row, ontology_class=cat, kind="classification", source="t", updated_by="t")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"{url}{dataset['id']}")

    assert response.status_code == 202
    assert client.get(f"{url}{dataset['id']}").status_code == 404
    with tenant_scope(TENANT_A):
        job = Job.objects.get(pk=response.json()["id"])
        assert (job.kind, job.status, job.counters["deleted"]) == ("dataset-delete", "succeeded", 1)
        assert not DataRow.objects.filter(pk=row.pk).exists()
        assert not Dataset.objects.filter(pk=dataset["id"]).exists()


def test_import_options_are_checked_before_a_job_is_queued(datasets_url):
    client, url = datasets_url
    dataset = client.post(url, {"name": "imports"}, format="json").json()
    response = client.post(f"{url}{dataset['id']}/imports", {"uri": "x.jsonl", "mode": "merge"}, format="json")
    assert response.status_code == 400
    assert "mode" in response.json()["extra"]["fields"]
    neither = client.post(f"{url}{dataset['id']}/imports", {"format": "jsonl"}, format="json")
    assert neither.status_code == 400
    assert "uri" in neither.json()["extra"]["fields"]
    with tenant_scope(TENANT_A):
        assert not Job.objects.filter(kind="dataset-import").exists()


def test_viewer_cannot_start_an_import(make_token, api_client, datasets_url):
    _, url = datasets_url
    viewer = api_client(make_token(TENANT_A, role="viewer"))
    assert viewer.post(f"{url}1/imports", {"uri": "x"}, format="json").status_code == 403


def test_an_import_from_an_address_the_outbound_policy_refuses_is_a_400_when_posted(datasets_url, files_server):
    client, url = datasets_url
    dataset = client.post(url, {"name": "ssrf"}, format="json").json()

    response = client.post(
        f"{url}{dataset['id']}/imports", {"uri": f"{files_server.url}/manifest.jsonl"}, format="json"
    )

    assert response.status_code == 400, response.content
    assert "is not allowed: its address is not one this deployment may fetch from" in response.json()["message"]
    assert "uri" in response.json()["extra"]["fields"]
    assert files_server.requests == []
    with tenant_scope(TENANT_A):
        assert not Job.objects.filter(kind="dataset-import").exists()


def test_an_import_redirected_to_a_refused_address_fails_its_job(
    datasets_url, files_server, allow_files_server, internal_server, celery_eager, django_capture_on_commit_callbacks
):
    # given an allowed server whose manifest redirects to an internal one
    client, url = datasets_url
    dataset = client.post(url, {"name": "ssrf-redirect"}, format="json").json()
    internal_server.files["/manifest.jsonl"] = b'{"external_id": "a", "uri": "s3://b/a.jpg"}\n'
    uri = f"{files_server.url}/redirect?to={internal_server.url}/manifest.jsonl"

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{url}{dataset['id']}/imports", {"uri": uri}, format="json")

    # then the request was accepted (the first address is allowed), the job failed on the redirect
    assert response.status_code == 202, response.content
    with tenant_scope(TENANT_A):
        job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "failed"
    assert f"redirects to '{internal_server.url}/manifest.jsonl', which is not allowed" in job.error
    assert internal_server.requests == []
    with tenant_scope(TENANT_A):
        assert not DataRow.objects.filter(dataset_id=dataset["id"]).exists()
