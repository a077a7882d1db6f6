"""The REST contract against a real server: a property-based run over every operation of the schema it serves, and a
client generated from that schema running the platform's loop. A real ASGI server, a worker and a training worker.

Path parameters point at real objects (a "world" built over REST first), else every call would be a 404; the
operations that destroy or replace data get objects of their own, so the rest keep finding theirs.
"""

import json
import re
import time

import httpx
import pytest

from demo.digits import write_digits
from tests.conftest import TENANT_A
from tests.live_services import live_environment, purge_task_queues, start_asgi_server, start_celery_worker

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
              pytest.mark.usefixtures("committed_tenants")]

TERMINAL = {"succeeded", "failed", "cancelled"}
# A model the built-in classifier trains in a few seconds on the digits.
TINY_HYPERPARAMETERS = {"architecture": "small-cnn", "image_size": 16, "epochs": 2, "batch_size": 8, "seed": 0,
                        "device": "cpu", "num_workers": 0, "augment": False}
# Examples per operation: ~60 operations in under 3 minutes on two loaded cores.
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def live_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    (root / "imports" / TENANT_A).mkdir(parents=True)
    return root / "imports" / TENANT_A, root / "storage"


@pytest.fixture(scope="module")
def live_platform(django_db_setup, auth0, platform, live_log_dir, live_folders):
    tenant_folder, storage = live_folders
    # The property-based run sends thousands of requests as one user: no rate limit may answer for the server.
    env = live_environment(auth0, platform, MLOPS_LOCAL_READ_ROOT=tenant_folder.parent, MLOPS_STORAGE_ROOT=storage,
                           API_RATE_PER_USER="1000000/min", API_RATE_PER_TENANT="1000000/min")
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
        self.http = httpx.Client(base_url=f"{base_url}/api/v1/", headers={"Authorization": f"Bearer {token}"},
                                 timeout=60)

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
    imported = rest.finish(rest.call("POST", f"{base}/imports", json={"uri": str(files.manifest),
                                                                      "create_classes": True}))
    rows = rest.get_when(f"{base}/datarows", lambda page: len(page["results"]) == files.rows,
                         )["results"]
    ontology = rest.call("GET", f"projects/{project}/ontology")["results"]
    label = rest.call("POST", f"{base}/datarows/{rows[0]['id']}/labels", json={"class": ontology[0]["name"]})
    slice_ = rest.call("POST", f"projects/{project}/slices/", json={
        "name": "all", "kind": "frozen", "query": "tags IN ('seed', 'holdout')"})
    rest.call("POST", f"projects/{project}/slices/{slice_['id']}/split",
              json={"seed": 0, "fractions": {"train": 0.75, "validation": 0.25}})
    exported = rest.finish(rest.call("POST", f"{base}/exports", json={}))
    world = {"project_id": project, "dataset_id": dataset, "datarow_id": rows[0]["id"], "label_id": label["id"],
             "slice_id": slice_["id"], "import_job_id": imported["id"], "export_job_id": exported["id"]}
    if train:
        model = rest.call("POST", f"projects/{project}/models", json={
            "name": "digits", "trainer": "image-classifier", "hyperparameters": TINY_HYPERPARAMETERS})
        run = rest.call("POST", f"projects/{project}/models/{model['id']}/runs", json={"slice_id": slice_["id"]})
        rest.finish(run["job"])
        version = rest.get_when(f"projects/{project}/training-runs/{run['id']}",
                                lambda body: body["model_version_id"] is not None)["model_version_id"]
        predicted = rest.call("POST", f"projects/{project}/prediction-runs",
                              json={"model_version_id": version, "slice_id": slice_["id"], "top_k": 2})
        rest.finish(predicted["job"])
        world |= {"model_id": model["id"], "run_id": run["id"], "model_version_id": version,
                  "prediction_run_id": predicted["id"]}
    return world


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
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                                    response_schema_conformance, status_code_conformance)

    token = make_token(TENANT_A)
    rest = Rest(live_platform.url, token)
    world = build_world(rest, live_folders[0], "contract-world", train=True)
    victim = build_world(rest, live_folders[0], "contract-victim", train=False)
    victim |= {name: world[name] for name in ("model_id", "run_id", "model_version_id", "prediction_run_id")}
    # the schema the server serves, which tests/test_api_contract.py holds equal to the committed one
    schema = schemathesis.openapi.from_url(f"{live_platform.url}/api/schema/?format=json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    headers = {"Authorization": f"Bearer {token}"}
    failures, operations = [], 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        fixed = _path_parameters(operation.method.upper(), operation.path, world, victim)
        strategy = st.one_of(*(operation.as_strategy(generation_mode=mode, path_parameters=fixed)
                               for mode in schemathesis.GenerationMode))

        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def call(case):
            case.call_and_validate(base_url=live_platform.url, headers=headers, checks=checks, timeout=60)

        try:
            call()
        except (Exception, FailureGroup) as error:  # every operation's failures in one report
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    elapsed = time.monotonic() - started
    assert operations >= 50
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)
    print(f"{operations} operations x {EXAMPLES_PER_OPERATION} examples in {elapsed:.0f} s")
