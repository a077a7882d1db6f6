import time
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import TENANT_A, TENANT_B
from tests.factories import dataset_make, project_make


@pytest.fixture
def import_root(tmp_path, settings) -> Path:
    """Tenant A's folder of local files, where test manifests are written: the only folder its imports may read,
    as in production settings (LOCAL_READ_ROOT/<schema>/; tenant B's folder is its sibling)."""
    settings.LOCAL_READ_ROOT = tmp_path / "imports"
    for schema in (TENANT_A, TENANT_B):
        (settings.LOCAL_READ_ROOT / schema).mkdir(parents=True)
    settings.STORAGE_ROOT = tmp_path / "storage"
    return settings.LOCAL_READ_ROOT / TENANT_A


@pytest.fixture(scope="module")
def s3_server():
    """moto's real S3 server on loopback."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_endpoint(s3_server, settings, monkeypatch) -> str:
    """The loopback S3, with the credentials and endpoint the storage layer uses."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    settings.AWS_S3_ENDPOINT_URL = s3_server
    return s3_server


@pytest.fixture
def write_jsonl(import_root):
    def write(records, name: str = "manifest.jsonl") -> str:
        path = import_root / name
        with open(path, "wb") as out:
            for record in records:
                out.write(record if isinstance(record, bytes) else orjson.dumps(record))
                out.write(b"\n")
        return str(path)

    return write


@pytest.fixture
def tenant_dataset(committed_tenants):
    """A fresh project and dataset in tenant A, committed, with the tenant active for the test body."""
    from tenancy.context import tenant_scope

    with tenant_scope(TENANT_A):
        yield dataset_make(project=project_make())


def wait_for_reader(timeout: float = 40.0) -> None:
    """Block until the reader (the streaming replica's copy of the test database) has replayed every write so far,
    so a request the router sends there sees what the test wrote outside a request. The timeout outlasts
    max_standby_streaming_delay (30 s), the longest the replica lets replay wait behind a conflicting query: twice
    in this suite replay stood still for more than 10 s (the query it waited behind was not found)."""
    from django.db import connections

    with connections["default"].cursor() as writer:
        writer.execute("SELECT pg_current_wal_insert_lsn()")
        (target,) = writer.fetchone()
    deadline = time.monotonic() + timeout
    with connections["reader"].cursor() as reader:
        while True:
            reader.execute("SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
            if reader.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the reader did not replay up to {target} in {timeout}s")
            time.sleep(0.01)


@pytest.fixture
def import_records(tenant_dataset, write_jsonl):
    """`import_records(records, dataset=None)` imports manifest records into `dataset` (default: tenant_dataset)
    with classes created, as an import job would, and waits until the reader has them."""
    from datasets.services.imports import ImportOptions, dataset_import_run
    from tenancy.context import tenant_scope

    def run(records, dataset=None):
        with tenant_scope(TENANT_A):
            counters = dataset_import_run(
                dataset=dataset or tenant_dataset,
                uri=write_jsonl(records, f"{uuid.uuid4()}.jsonl"),
                options=ImportOptions(create_classes=True),
                source="import:seed",
                user="seeder",
                progress=lambda counters, errors: None,
            )
        wait_for_reader()
        return counters

    return run


@pytest.fixture
def run_import(tenant_dataset):
    """`run_import(uri, **options)` runs an import into tenant_dataset here and now; returns (counters, errors)."""
    from datasets.services.imports import ImportOptions, dataset_import_run

    def run(uri: str, **options):
        errors = []
        counters = dataset_import_run(
            dataset=tenant_dataset,
            uri=uri,
            options=ImportOptions(**options),
            source=f"import:{uuid.uuid4().hex}",
            user="tester",
            progress=lambda counters, batch_errors: errors.extend(batch_errors),
        )
        return counters, errors

    return run
