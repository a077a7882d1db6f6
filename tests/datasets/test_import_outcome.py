"""An import's outcome says what happened: every line bad is a failed job; some lines bad is a partial success."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import TENANT_A

pytestmark = pytest.mark.django_db

GOOD = b'{"external_id": "a", "uri": "s3://b/a.jpg"}\n'
BAD = b'{"external_id": "no-uri"}\n'


@pytest.fixture
def start_import(make_token, api_client, settings, tmp_path, celery_eager, django_capture_on_commit_callbacks):
    """Post `manifest` as an import and return the job as REST shows it once it has run (eagerly)."""
    settings.STORAGE_ROOT = tmp_path / "storage"
    client = api_client(make_token(TENANT_A))
    project = client.post("/api/v1/projects/", {"name": "outcomes"}, format="json").json()
    dataset = client.post(f"/api/v1/projects/{project['id']}/datasets/", {"name": "o"}, format="json").json()

    def start(manifest: bytes) -> dict:
        url = f"/api/v1/projects/{project['id']}/datasets/{dataset['id']}/imports"
        with django_capture_on_commit_callbacks(execute=True):
            started = client.post(url, {"file": SimpleUploadedFile("m.jsonl", manifest)}, format="multipart")
        assert started.status_code == 202, started.content
        return client.get(f"/api/v1/jobs/{started.json()['id']}").json()

    return start


def test_an_import_whose_every_line_failed_ends_failed_with_the_error_summary(start_import):
    # when every line of the manifest is bad
    job = start_import(BAD * 3)
    # then the job failed, saying so and why, with the counters and the first errors kept
    assert job["status"] == "failed", job
    assert job["error"] == (
        "ImportFailed: Nothing was imported: every line had errors (3 errors on 3 lines). First: "
        "line 1, uri is required. All errors are in the import's error report."
    )
    counters = job["counters"]
    assert (counters["lines"], counters["errors"], counters["error_lines"], counters["committed_rows"]) == (3, 3, 3, 0)
    assert counters["first_errors"][0] == {"line": 1, "field": "uri", "message": "is required"}


def test_an_import_with_some_lines_left_out_succeeds_as_partial(start_import):
    job = start_import(GOOD + BAD)

    assert job["status"] == "succeeded", job
    assert job["counters"]["partial"] is True
    assert (job["counters"]["error_lines"], job["counters"]["committed_rows"]) == (1, 1)
    assert job["message"] == (
        "2 lines read, 1 datarows committed, 1 lines left out for errors (first_errors, and the error report)"
    )


def test_an_import_without_errors_is_not_partial(start_import):
    job = start_import(GOOD)

    assert job["status"] == "succeeded", job
    assert (job["counters"]["partial"], job["counters"]["error_lines"]) == (False, 0)
    assert job["message"] == "1 lines read, 1 datarows committed"
