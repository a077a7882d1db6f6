"""The REST contract against a real server: a property-based run over every operation of the schema it serves, and a
client generated from that schema running the platform's loop. A real ASGI server, a worker and a training worker.

Path parameters point at real objects (a "world" built over REST first), else every call would be a 404; the
operations that destroy or replace data get objects of their own, so the rest keep finding theirs.
"""

import importlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from demo.digits import write_digits
from tests.conftest import TENANT_A
from tests.contract import SCHEMA_PATH
from tests.live_services import live_environment, purge_task_queues, start_asgi_server, start_celery_worker

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

TERMINAL = {"succeeded", "failed", "cancelled"}
# A model the built-in classifier trains in a few seconds on the digits.
TINY_HYPERPARAMETERS = {
    "architecture": "small-cnn",
    "image_size": 16,
    "epochs": 2,
    "batch_size": 8,
    "seed": 0,
    "device": "cpu",
    "num_workers": 0,
    "augment": False,
}
# Examples per operation: about 60 operations in 2 minutes on two loaded cores (the run may take up to 3).
EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def live_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    (root / "imports" / TENANT_A).mkdir(parents=True)
    return root / "imports" / TENANT_A, root / "storage"


@pytest.fixture(scope="module")
def live_platform(django_db_setup, auth0, platform, live_log_dir, live_folders):
    tenant_folder, storage = live_folders
    # The property-based run sends thousands of requests as one user: no rate limit may answer for the server.
    env = live_environment(
        auth0,
        platform,
        MLOPS_LOCAL_READ_ROOT=tenant_folder.parent,
        MLOPS_STORAGE_ROOT=storage,
        API_RATE_PER_USER="1000000/min",
        API_RATE_PER_TENANT="1000000/min",
    )
    purge_task_queues()
    processes = []
    try:
        processes.append(start_celery_worker(env, live_log_dir, name="worker"))
        processes.append(start_celery_worker(env, live_log_dir, name="training", queues=("training",), pool="solo"))
        processes.append(start_asgi_server(env, live_log_dir))
        yield processes[-1]
    finally:
        for process in processes:
            process.stop()


class Rest:
    """Plain REST calls that build the objects the contract runs point at."""

    def __init__(self, base_url: str, token: str):
        self.http = httpx.Client(
            base_url=f"{base_url}/api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path} -> {response.status_code}: {response.text[:500]}"
        return response.json() if response.content else {}

    def get_when(self, path: str, ready, *, timeout: float = 120) -> dict:
        """GET until `ready` holds: reads go to the replica, a moment behind what a worker wrote."""
        deadline = time.monotonic() + timeout
        while not ready(body := self.call("GET", path)):
            assert time.monotonic() < deadline, f"GET {path} did not get ready within {timeout} s: {body}"
            time.sleep(0.2)
        return body

    def finish(self, job: dict) -> dict:
        job = self.get_when(f"jobs/{job['id']}", lambda body: body["status"] in TERMINAL)
        assert job["status"] == "succeeded", job
        return job


def build_world(rest: Rest, folder, name: str, *, train: bool) -> dict[str, int | str]:
    """A project with an imported, labelled dataset, a split slice and an export; with `train`, a trained model
    version and its prediction run. Returns every id a path can name."""
    files = write_digits(folder / name, limit=24, seed_per_class=2, holdout_fraction=0.25)
    project = rest.call("POST", "projects/", json={"name": name})["id"]
    dataset = rest.call("POST", f"projects/{project}/datasets/", json={"name": "digits"})["id"]
    base = f"projects/{project}/datasets/{dataset}"
    imported = rest.finish(
        rest.call("POST", f"{base}/imports", json={"uri": str(files.manifest), "create_classes": True})
    )
    rows = rest.get_when(
        f"{base}/datarows",
        lambda page: len(page["results"]) == files.rows,
    )["results"]
    ontology = rest.call("GET", f"projects/{project}/ontology")["results"]
    label = rest.call("POST", f"{base}/datarows/{rows[0]['id']}/labels", json={"class": ontology[0]["name"]})
    slice_ = rest.call(
        "POST",
        f"projects/{project}/slices/",
        json={"name": "all", "kind": "frozen", "query": "tags IN ('seed', 'holdout')"},
    )
    rest.call(
        "POST",
        f"projects/{project}/slices/{slice_['id']}/split",
        json={"seed": 0, "fractions": {"train": 0.75, "validation": 0.25}},
    )
    exported = rest.finish(rest.call("POST", f"{base}/exports", json={}))
    world = {
        "project_id": project,
        "dataset_id": dataset,
        "datarow_id": rows[0]["id"],
        "label_id": label["id"],
        "slice_id": slice_["id"],
        "import_job_id": imported["id"],
        "export_job_id": exported["id"],
    }
    if train:
        model = rest.call(
            "POST",
            f"projects/{project}/models",
            json={"name": "digits", "trainer": "image-classifier", "hyperparameters": TINY_HYPERPARAMETERS},
        )
        run = rest.call("POST", f"projects/{project}/models/{model['id']}/runs", json={"slice_id": slice_["id"]})
        rest.finish(run["job"])
        version = rest.get_when(
            f"projects/{project}/training-runs/{run['id']}", lambda body: body["model_version_id"] is not None
        )["model_version_id"]
        predicted = rest.call(
            "POST",
            f"projects/{project}/prediction-runs",
            json={"model_version_id": version, "slice_id": slice_["id"], "top_k": 2},
        )
        rest.finish(predicted["job"])
        world |= {
            "model_id": model["id"],
            "run_id": run["id"],
            "model_version_id": version,
            "prediction_run_id": predicted["id"],
            "evaluation_run_id": _evaluation_run(rest, folder / name, project, rows[0]["uri"], ontology[0]["name"]),
        }
    return world


def _evaluation_run(rest: Rest, folder, project: int, uri: str, class_name: str) -> int:
    """An evaluation run of a detector imported with its one box prediction, on a slice of one labelled box."""
    dataset = rest.call("POST", f"projects/{project}/datasets/", json={"name": "boxes"})["id"]
    box = [0, 0, 4, 4]
    record = {
        "external_id": "box-0",
        "uri": uri,
        "labels": [{"class": class_name, "box": box}],
        "predictions": [{"model": "boxes", "version": "1", "class": class_name, "score": 0.9, "box": box}],
    }
    manifest = folder / "boxes.jsonl"
    manifest.write_text(json.dumps(record) + "\n")
    rest.finish(rest.call("POST", f"projects/{project}/datasets/{dataset}/imports", json={"uri": str(manifest)}))
    scope = rest.call(
        "POST", f"projects/{project}/slices/", json={"name": "boxes", "kind": "frozen", "query": f"dataset = {dataset}"}
    )
    versions = rest.call("GET", f"projects/{project}/model-versions")["results"]
    version = next(v["id"] for v in versions if v["name"] == "boxes")
    run = rest.call(
        "POST", f"projects/{project}/evaluation-runs", json={"model_version_id": version, "slice_id": scope["id"]}
    )
    rest.finish(run["job"])
    return run["id"]


# Operations that delete or replace data, and imports (a generated manifest may replace a dataset's rows): they act
# on objects of their own, so every other operation keeps finding the world's.
def _destroys(method: str, path: str) -> bool:
    return method == "DELETE" or path.endswith(("/datarows/delete", "/search/bulk", "/imports"))


def _path_parameters(method: str, path: str, world: dict, victim: dict) -> dict:
    source = victim if _destroys(method, path) else world
    names = re.findall(r"{(\w+)}", path)
    if "job_id" in names:
        source = {**source, "job_id": source["export_job_id" if "/exports/" in path else "import_job_id"]}
    return {name: source[name] for name in names}


def test_every_operation_answers_as_its_schema_says(live_platform, live_folders, make_token):
    """Generated requests, valid and invalid, to every operation: no 5xx, and every status, content type and body
    is one the schema documents for that operation."""

    token = make_token(TENANT_A)
    rest = Rest(live_platform.url, token)
    world = build_world(rest, live_folders[0], "contract-world", train=True)
    victim = build_world(rest, live_folders[0], "contract-victim", train=False)
    victim |= {
        name: world[name]
        for name in ("model_id", "run_id", "model_version_id", "prediction_run_id", "evaluation_run_id")
    }
    # the schema the server serves, which tests/test_api_contract.py holds equal to the committed one
    schema = schemathesis.openapi.from_url(f"{live_platform.url}/api/schema/?format=json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    headers = {"Authorization": f"Bearer {token}"}
    failures, operations = [], 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        fixed = _path_parameters(operation.method.upper(), operation.path, world, victim)
        strategy = st.one_of(
            *(
                operation.as_strategy(generation_mode=mode, path_parameters=fixed)
                for mode in schemathesis.GenerationMode
            )
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def call(case):
            case.call_and_validate(base_url=live_platform.url, headers=headers, checks=checks, timeout=60)

        try:
            call()
        except (Exception, FailureGroup) as error:  # noqa: BLE001 (every operation's failures in one report)
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    elapsed = time.monotonic() - started
    assert operations >= 50
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)
    print(f"{operations} operations x {EXAMPLES_PER_OPERATION} examples in {elapsed:.0f} s")


# The binary downloads (an image, an error report) come back as bytes: the generator parses no such body by itself.
CLIENT_CONFIG = {
    "package_name_override": "mlops_contract_client",
    "content_type_overrides": {
        "image/*": "application/octet-stream",
        "application/x-ndjson": "application/octet-stream",
    },
}


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory):
    """The committed schema's Python client, generated offline for this run (so it never lags the schema),
    imported as `mlops_contract_client`. The generator fails on any warning: every operation must generate."""
    out = tmp_path_factory.mktemp("client")
    config = out / "config.json"
    config.write_text(json.dumps(CLIENT_CONFIG))
    venv_bin = Path(sys.executable).parent
    generated = subprocess.run(
        [
            venv_bin / "openapi-python-client",
            "generate",
            "--path",
            SCHEMA_PATH,
            "--meta",
            "none",
            "--config",
            config,
            "--output-path",
            out / "mlops_contract_client",
            "--fail-on-warning",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"},
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("mlops_contract_client")
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name.split(".")[0] == "mlops_contract_client"]:
            del sys.modules[name]


class GeneratedApi:
    """Calls an operation of the generated client by its tag and operationId, as a frontend would."""

    def __init__(self, package, base_url: str, token: str):
        self.client = package.AuthenticatedClient(base_url=base_url, token=token, timeout=httpx.Timeout(60))
        self.models = importlib.import_module("mlops_contract_client.models")

    def __call__(self, tag: str, operation_id: str, **kwargs):
        operation = importlib.import_module(f"mlops_contract_client.api.{tag}.{operation_id}")
        response = operation.sync_detailed(client=self.client, **kwargs)
        assert 200 <= response.status_code < 300, (operation_id, response.status_code, response.content[:500])
        assert not isinstance(response.parsed, self.models.Error), response.parsed
        return response.parsed

    def finish(self, job_id):
        deadline = time.monotonic() + 180
        while (job := self("jobs", "job_detail_get", job_id=job_id)).status.value not in TERMINAL:
            assert time.monotonic() < deadline, f"job {job_id} did not end: {job.to_dict()}"
            time.sleep(0.2)
        assert job.status.value == "succeeded", job.to_dict()
        return job

    def get_when(self, ready, tag: str, operation_id: str, **kwargs):
        """GET until `ready` holds: reads go to the replica, a moment behind what a worker wrote."""
        deadline = time.monotonic() + 60
        while not ready(body := self(tag, operation_id, **kwargs)):
            assert time.monotonic() < deadline, f"{operation_id} did not get ready: {body.to_dict()}"
            time.sleep(0.2)
        return body


def test_a_client_generated_from_the_schema_runs_the_loop(generated_client, live_platform, live_folders, make_token):
    """Create, upload an import, search, slice, split, train, predict and score: all through the generated client's
    typed models, so the schema is complete enough to code a frontend against."""
    api = GeneratedApi(generated_client, live_platform.url, make_token(TENANT_A))
    models = api.models
    files = write_digits(live_folders[0] / "client-loop", limit=40, seed_per_class=3, holdout_fraction=0.25)
    # when
    project = api(
        "projects",
        "project_list_create_post",
        body=models.ProjectListCreateCreateInputRequest(name="generated client loop"),
    )
    dataset = api(
        "datasets",
        "dataset_list_create_post",
        project_id=project.id,
        body=models.DatasetListCreateCreateInputRequest(name="digits"),
    )
    upload = models.DatasetImportStartUploadInputRequest(
        file=generated_client.types.File(payload=io.BytesIO(files.manifest.read_bytes()), file_name="manifest.jsonl"),
        create_classes=True,
    )
    imported = api.finish(
        api("datasets", "dataset_import_start_post", project_id=project.id, dataset_id=dataset.id, body=upload).id
    )
    labelled = "tags IN ('seed', 'holdout')"
    found = api.get_when(
        lambda body: body.total.value == files.seed_rows + files.holdout_rows,
        "search",
        "project_search_post",
        project_id=project.id,
        body=models.SearchInputRequest(query=labelled, page_size=5, facets=["label.class"]),
    )
    created = api(
        "slices",
        "slice_list_create_post",
        project_id=project.id,
        body=models.SliceListCreateCreateInputRequest(
            name="labelled", kind=models.SliceListCreateCreateInputKindEnum.FROZEN, query=labelled
        ),
    )
    slice_id = created.slice_.id if hasattr(created, "slice_") else created.id
    api.get_when(
        lambda body: body.status.value == "ready",
        "slices",
        "slice_detail_get",
        project_id=project.id,
        slice_id=slice_id,
    )
    api(
        "slices",
        "slice_split_post",
        project_id=project.id,
        slice_id=slice_id,
        body=models.SliceSplitInputRequest(
            seed=0, fractions=models.SliceSplitInputRequestFractions.from_dict({"train": 0.75, "validation": 0.25})
        ),
    )
    model = api(
        "training",
        "model_definition_list_create_post",
        project_id=project.id,
        body=models.ModelDefinitionListCreateInputRequest(
            name="digits",
            trainer="image-classifier",
            hyperparameters=models.ModelDefinitionListCreateInputRequestHyperparameters.from_dict(TINY_HYPERPARAMETERS),
        ),
    )
    run = api(
        "training",
        "training_run_list_start_post",
        project_id=project.id,
        model_id=model.id,
        body=models.TrainingRunListStartInputRequest(slice_id=slice_id),
    )
    trained = api.finish(run.job.id)
    version_id = api.get_when(
        lambda body: body.model_version_id is not None,
        "training",
        "training_run_detail_get",
        project_id=project.id,
        run_id=run.id,
    ).model_version_id
    predicted = api(
        "predictions",
        "prediction_run_list_start_post",
        project_id=project.id,
        body=models.PredictionRunListStartInputRequest(model_version_id=version_id, slice_id=slice_id, top_k=2),
    )
    api.finish(predicted.job.id)
    metrics = api(
        "predictions",
        "model_version_metrics_get",
        project_id=project.id,
        model_version_id=version_id,
        slice_id=slice_id,
    )
    # then
    assert imported.counters["inserted"] == files.rows
    assert {facet.value for facet in found.facets["label.class"]} <= {f"digit/{digit}" for digit in range(10)}
    assert trained.counters["loss"] > 0
    assert 0 <= metrics.accuracy <= 1
