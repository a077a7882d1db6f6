"""Files uploaded to start an import: a size limit (413, nothing kept), and deleted once their job has ended."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from datasets.models import Dataset
from datasets.services.imports import ImportOptions, dataset_import_start
from jobs.models import Job
from jobs.services import job_fail_stale, job_request_cancel, job_start
from mlops.storage import save_upload
from tenancy.context import tenant_scope
from tenancy.principal import Principal
from tests.conftest import TENANT_A

pytestmark = pytest.mark.django_db

MANIFEST = b'{"external_id": "a", "uri": "s3://b/a.jpg"}\n{"external_id": "b", "uri": "s3://b/b.jpg"}\n'


@pytest.fixture
def imports_url(make_token, api_client, settings, tmp_path):
    settings.STORAGE_ROOT = tmp_path / "storage"
    client = api_client(make_token(TENANT_A))
    project = client.post("/api/v1/projects/", {"name": "uploads"}, format="json").json()
    dataset = client.post(f"/api/v1/projects/{project['id']}/datasets/", {"name": "up"}, format="json").json()
    return client, f"/api/v1/projects/{project['id']}/datasets/{dataset['id']}/imports"


def _uploads(settings) -> list:
    folder = settings.STORAGE_ROOT / TENANT_A / "uploads"
    return sorted(p.relative_to(folder) for p in folder.rglob("*")) if folder.exists() else []


def test_an_upload_over_the_limit_is_413_and_nothing_is_kept(imports_url, settings):
    client, url = imports_url
    settings.UPLOAD_MAX_BYTES = 1000

    response = client.post(url, {"file": SimpleUploadedFile("big.jsonl", MANIFEST * 50)}, format="multipart")

    assert response.status_code == 413, response.content
    body = response.json()
    assert body["message"] == "The upload is larger than the limit of 1000 bytes (UPLOAD_MAX_BYTES)."
    assert body["extra"] == {"limit_bytes": 1000, "setting": "UPLOAD_MAX_BYTES"}
    assert _uploads(settings) == []
    with tenant_scope(TENANT_A):
        assert not Job.objects.filter(kind="dataset-import").exists()


def test_an_upload_is_deleted_when_its_job_ends_unless_kept(
    imports_url, settings, celery_eager, django_capture_on_commit_callbacks
):
    client, url = imports_url

    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.post(url, {"file": SimpleUploadedFile("m.jsonl", MANIFEST)}, format="multipart")
    assert deleted.status_code == 202, deleted.content
    assert _uploads(settings) == []

    with django_capture_on_commit_callbacks(execute=True):
        kept = client.post(
            url, {"file": SimpleUploadedFile("m.jsonl", MANIFEST), "keep_upload": "true"}, format="multipart"
        )
    assert kept.status_code == 202, kept.content
    assert [path.name for path in _uploads(settings) if path.suffix] == ["m.jsonl"]
    with tenant_scope(TENANT_A):
        # both jobs read their file whole before it went
        assert [(job.status, job.counters["lines"]) for job in Job.objects.filter(kind="dataset-import")] == [
            ("succeeded", 2),
            ("succeeded", 2),
        ]


@pytest.mark.parametrize("end", ["cancelled while queued", "reaped as lost"])
def test_an_upload_is_deleted_when_its_job_ends_without_running(
    imports_url, settings, end, django_capture_on_commit_callbacks
):
    with tenant_scope(TENANT_A):
        dataset = Dataset.objects.get(name="up")
        uri = save_upload(SimpleUploadedFile("m.jsonl", MANIFEST))
        job = dataset_import_start(
            principal=Principal(
                user_id="u",
                email="u@x",
                tenant_schema=TENANT_A,
                workspace_id="ws-1",
                role="editor",
                database="main",
                expires_at=0,
            ),
            dataset=dataset,
            uri=uri,
            options=ImportOptions(),
            owns_upload=True,
        )
        assert len(_uploads(settings)) == 2  # the folder and its file

        with django_capture_on_commit_callbacks(execute=True):
            if end == "cancelled while queued":
                ended = job_request_cancel(job=job)
            else:
                job_start(job_id=job.pk)
                (ended,) = job_fail_stale(now=timezone.now() + timedelta(hours=1))

    assert ended.status in ("cancelled", "failed")
    assert _uploads(settings) == []
