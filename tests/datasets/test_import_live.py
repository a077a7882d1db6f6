"""Imports with the real things: REST on a live ASGI server, a Celery worker on Redis, the job websocket.
(A worker killed mid-import is in test_import_worker_loss.py.)"""

from contextlib import suppress

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from tests.conftest import TENANT_A
from tests.datasets.manifests import manifest_rows, write_manifest
from tests.live_services import (
    live_environment,
    purge_task_queues,
    start_asgi_server,
    start_celery_worker,
)
from tests.websocket_contract import job_message

pytestmark = pytest.mark.usefixtures("committed_tenants")
UPLOAD_LIMIT = 100_000


@pytest.fixture(scope="module")
def read_root(tmp_path_factory):
    return tmp_path_factory.mktemp("import-root")


@pytest.fixture(scope="module")
def storage_root(tmp_path_factory):
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="module")
def live_env(auth0, platform, read_root, storage_root):
    return live_environment(
        auth0, platform, MLOPS_LOCAL_READ_ROOT=read_root, MLOPS_STORAGE_ROOT=storage_root, UPLOAD_MAX_BYTES=UPLOAD_LIMIT
    )


@pytest.fixture(scope="module")
def server(django_db_setup, live_env, tmp_path_factory):
    server = start_asgi_server(live_env, tmp_path_factory.mktemp("asgi"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(django_db_setup, live_env, tmp_path_factory):
    purge_task_queues()
    worker = start_celery_worker(live_env, tmp_path_factory.mktemp("worker"), name="import-worker")
    yield worker
    worker.stop()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _uploads(storage_root) -> list:
    return list((storage_root / TENANT_A / "uploads").rglob("*.jsonl"))


def test_an_uploaded_manifest_is_imported_by_a_worker_with_progress_on_the_websocket(
    server, worker, make_token, tmp_path, storage_root
):
    token = make_token(TENANT_A)
    project = httpx.post(f"{server.url}/api/v1/projects/", headers=_bearer(token), json={"name": "live-import"}).json()
    datasets_url = f"{server.url}/api/v1/projects/{project['id']}/datasets/"
    dataset = httpx.post(datasets_url, headers=_bearer(token), json={"name": "cams"}).json()
    manifest = write_manifest(tmp_path / "upload.jsonl", [*manifest_rows(0, 50), {"external_id": "bad"}])

    # when the manifest is uploaded with the request that starts the import
    with open(manifest, "rb") as upload:
        response = httpx.post(
            f"{datasets_url}{dataset['id']}/imports",
            headers=_bearer(token),
            timeout=30,
            data={"create_classes": "true"},
            files={"file": ("upload.jsonl", upload)},
        )
    assert response.status_code == 202, response.text
    job = response.json()
    with connect(f"{server.ws_url}/ws/jobs/{job['id']}/?token={token}", open_timeout=10) as websocket:
        states = []
        with suppress(ConnectionClosedOK):  # the server closes once the job has ended
            while True:
                states.append(job_message(websocket.recv(timeout=60))["job"])

    # then the websocket followed the job to its end, and the dataset holds every good line
    final = states[-1]
    assert final["status"] == "succeeded", final
    assert (final["counters"]["inserted"], final["counters"]["labels"], final["counters"]["errors"]) == (50, 100, 1)
    assert final["counters"]["first_errors"] == [{"line": 51, "field": "uri", "message": "is required"}]
    fetched = httpx.get(f"{datasets_url}{dataset['id']}", headers=_bearer(token)).json()
    assert (fetched["datarow_count"], fetched["label_count"]) == (50, 100)
    report = httpx.get(f"{datasets_url}{dataset['id']}/imports/{job['id']}/errors", headers=_bearer(token))
    assert report.status_code == 200
    assert orjson.loads(report.content.splitlines()[0]) == {"line": 51, "field": "uri", "message": "is required"}
    # and the uploaded file went with the job's end
    assert _uploads(storage_root) == []


def test_an_upload_over_the_limit_is_refused_before_or_while_its_body_is_read(
    server, make_token, tmp_path, storage_root
):
    token = make_token(TENANT_A)
    project = httpx.post(f"{server.url}/api/v1/projects/", headers=_bearer(token), json={"name": "big-upload"}).json()
    datasets_url = f"{server.url}/api/v1/projects/{project['id']}/datasets/"
    dataset = httpx.post(datasets_url, headers=_bearer(token), json={"name": "big"}).json()
    url = f"{datasets_url}{dataset['id']}/imports"
    big = write_manifest(tmp_path / "big.jsonl", manifest_rows(0, 2000))

    # with a Content-Length, and streamed without one (chunked)
    with open(big, "rb") as upload:
        declared = httpx.post(url, headers=_bearer(token), timeout=30, files={"file": ("big.jsonl", upload)})
    boundary = b"limit-test"
    head = b'--limit-test\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'

    def chunked():
        yield head
        with open(big, "rb") as upload:
            while chunk := upload.read(8192):
                yield chunk
        yield b"\r\n--limit-test--\r\n"

    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
    streamed = httpx.post(url, timeout=30, content=chunked(), headers={**_bearer(token), **multipart})

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["extra"] == {"limit_bytes": UPLOAD_LIMIT, "setting": "UPLOAD_MAX_BYTES"}
    assert _uploads(storage_root) == []
