"""Training and prediction runs on a real Celery worker that consumes only the `training` queue.

Runs are started over REST in this process; the message goes through Redis to the worker, which reads the
images from disk and writes artifacts to storage, both under this module's temporary folder. Every progress
report is written (no throttle), so a cancel is seen at the very next step.
"""

import contextlib
import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from datasets.models import ModelVersion, Prediction
from jobs.models import Job
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.conftest import wait_for_reader
from tests.live_services import live_environment, purge_task_queues, start_celery_worker, wait_until
from tests.training.conftest import TINY_CONFIG, TINY_DETECTOR_CONFIG, make_box_data, make_image_data
from tests.websocket_contract import job_message
from training.models import TrainingRun

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

TERMINAL = {Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED}
# The worker's deployment registers "plugin" as a trainer whose import exits (the test process, as a web host whose
# plugin loads, registers it as a working one).
WORKER_TRAINER_PLUGINS = {"plugin": "tests.training.exiting_plugin:Trainer"}


@pytest.fixture(scope="module")
def live_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("training-live")
    (root / "imports" / TENANT_A / "images").mkdir(parents=True)
    return root / "imports" / TENANT_A / "images", root / "storage"


@pytest.fixture(scope="module")
def training_worker(django_db_setup, auth0, platform, live_log_dir, live_folders):
    images, storage = live_folders
    purge_task_queues()
    worker = start_celery_worker(
        live_environment(
            auth0,
            platform,
            MLOPS_LOCAL_READ_ROOT=images.parent.parent,
            MLOPS_STORAGE_ROOT=storage,
            JOB_PROGRESS_MIN_INTERVAL_SECONDS=0,
            TRAINER_PLUGINS=json.dumps(WORKER_TRAINER_PLUGINS),
        ),
        live_log_dir,
        name="training",
        queues=("training",),
        pool="solo",
    )
    yield worker
    worker.stop()


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


def _job(job_id) -> Job:
    with tenant_scope(TENANT_A):
        return Job.objects.using("default").get(pk=job_id)


def _run(run_id) -> TrainingRun:
    with tenant_scope(TENANT_A):
        return TrainingRun.objects.using("default").select_related("job").get(pk=run_id)


def _start_training(client, data, trainer: str = "image-classifier", **hyperparameters) -> dict:
    wait_for_reader()  # the request may read from the replica: let it replay the data written here first
    base = f"/api/v1/projects/{data.project.pk}"
    model = client.post(
        f"{base}/models",
        {"name": "colours", "trainer": trainer, "hyperparameters": {**TINY_CONFIG, **hyperparameters}},
        format="json",
    )
    assert model.status_code == 201, model.content
    started = client.post(f"{base}/models/{model.json()['id']}/runs", {"slice_id": data.slice.pk}, format="json")
    assert started.status_code == 202, started.content
    return started.json()


def _wait_for_end(job_id, worker, timeout: float = 180) -> Job:
    return wait_until(
        lambda: (job := _job(job_id)).status in TERMINAL and job,
        timeout=timeout,
        what=f"job {job_id} to end",
        interval=0.2,
        logs_of=(worker,),
    )


def test_a_run_succeeds_on_the_training_worker_and_its_version_then_predicts(client, training_worker, live_folders):
    # given
    with tenant_scope(TENANT_A):
        data = make_image_data(live_folders[0])
    # when
    started = _start_training(client, data)
    job = _wait_for_end(started["job"]["id"], training_worker)
    # then
    run = _run(started["id"])
    assert job.status == Job.Status.SUCCEEDED, (job.error, run.logs)
    assert job.counters["loss"] > 0 and job.counters["images_per_second"] > 0
    assert [epoch["epoch"] for epoch in run.epochs] == [1, 2]
    assert run.device == "cpu" and run.finished_at and run.started_at <= run.finished_at
    assert run.artifact_uri.startswith(str(live_folders[1]))
    with tenant_scope(TENANT_A):
        version = ModelVersion.objects.using("default").get(training_run=run)
    assert (version.name, version.version) == ("colours", "1")

    # when: the version predicts the whole dataset on the same worker
    wait_for_reader()  # the version was written by the worker; the request may read from the replica
    predicted = client.post(
        f"/api/v1/projects/{data.project.pk}/prediction-runs",
        {"model_version_id": version.pk, "dataset_id": data.dataset.pk, "top_k": 2},
        format="json",
    )
    assert predicted.status_code == 202, predicted.content
    prediction_job = _wait_for_end(predicted.json()["job"]["id"], training_worker)
    # then
    assert prediction_job.status == Job.Status.SUCCEEDED, prediction_job.error
    assert prediction_job.counters == {"datarows": 16, "predictions": 32}
    with tenant_scope(TENANT_A):
        written = Prediction.objects.using("default").filter(model_version=version)
        assert written.count() == 32
        assert set(written.values_list("datarow_id", flat=True)) == set(data.datarow_ids)


def test_a_detector_run_succeeds_on_the_training_worker_and_its_version_predicts_boxes(
    client, training_worker, live_folders
):
    # given
    with tenant_scope(TENANT_A):
        data = make_box_data(live_folders[0])
    wait_for_reader()
    base = f"/api/v1/projects/{data.project.pk}"
    model = client.post(
        f"{base}/models",
        {"name": "shapes", "trainer": "detector-fcos", "hyperparameters": TINY_DETECTOR_CONFIG},
        format="json",
    )
    assert model.status_code == 201, model.content
    # when
    started = client.post(f"{base}/models/{model.json()['id']}/runs", {"slice_id": data.slice.pk}, format="json")
    assert started.status_code == 202, started.content
    job = _wait_for_end(started.json()["job"]["id"], training_worker)
    # then
    run = _run(started.json()["id"])
    assert job.status == Job.Status.SUCCEEDED, (job.error, run.logs)
    assert set(job.counters["loss_parts"]) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert run.device == "cpu" and [epoch["epoch"] for epoch in run.epochs] == [1]
    with tenant_scope(TENANT_A):
        version = ModelVersion.objects.using("default").get(training_run=run)

    # when: the version predicts the dataset's boxes on the same worker
    wait_for_reader()
    predicted = client.post(
        f"{base}/prediction-runs",
        {"model_version_id": version.pk, "dataset_id": data.dataset.pk, "top_k": 2, "score_threshold": 0.0},
        format="json",
    )
    assert predicted.status_code == 202, predicted.content
    prediction_job = _wait_for_end(predicted.json()["job"]["id"], training_worker)
    # then
    assert prediction_job.status == Job.Status.SUCCEEDED, prediction_job.error
    with tenant_scope(TENANT_A):
        written = Prediction.objects.using("default").filter(model_version=version)
        assert set(written.values_list("kind", flat=True)) == {"box"}
        assert written.count() == prediction_job.counters["predictions"] <= 2 * 8
    assert prediction_job.counters["datarows"] == 8


def test_progress_streams_per_step_and_a_cancel_stops_the_run_within_one_step(
    client, make_token, training_worker, live_asgi_server, live_folders
):
    # given: a run of 1,500 steps, followed on its job's websocket
    with tenant_scope(TENANT_A):
        data = make_image_data(live_folders[0])
    started = _start_training(client, data, epochs=500)
    token = make_token(TENANT_A)
    with connect(
        f"{live_asgi_server.ws_url}/ws/jobs/{started['job']['id']}/", subprotocols=["bearer", token], open_timeout=10
    ) as websocket:
        running = []
        while len(running) < 3:
            state = job_message(websocket.recv(timeout=120))["job"]
            if state["status"] == "running" and state["progress"]["done"]:
                running.append(state)
        # when
        cancelled = client.post(f"/api/v1/jobs/{started['job']['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.content
        steps_when_asked = cancelled.json()["progress"]["done"]
        rest = []
        with contextlib.suppress(ConnectionClosedOK):
            while True:
                rest.append(job_message(websocket.recv(timeout=60))["job"])
    # then: each step arrived with its loss, accuracy, throughput and ETA
    steps = [state["progress"]["done"] for state in running]
    assert steps == sorted(steps) and len(set(steps)) == 3
    for state in running:
        assert {"loss", "accuracy", "images_per_second", "eta_seconds"} <= state["counters"].keys()
        assert state["progress"]["total"] == 1500
    # and the step under way when the cancel came was the last one
    job = _wait_for_end(started["job"]["id"], training_worker, timeout=60)
    run = _run(started["id"])
    assert job.status == Job.Status.CANCELLED and rest[-1]["status"] == "cancelled"
    assert steps_when_asked <= job.progress_done <= steps_when_asked + 1 < 1500
    assert run.finished_at and run.error == ""
    assert "cancelled on request" in run.logs and "training colours run 1" in run.logs
    with tenant_scope(TENANT_A):
        assert not ModelVersion.objects.using("default").filter(training_run=run).exists()


def test_a_run_that_cannot_read_an_image_fails_with_its_error_and_logs_kept(client, training_worker, live_folders):
    # given: two datarows whose files are not there
    with tenant_scope(TENANT_A):
        data = make_image_data(live_folders[0], unreadable=2)
    # when
    started = _start_training(client, data)
    job = _wait_for_end(started["job"]["id"], training_worker)
    # then
    run = _run(started["id"])
    missing = f"{data.project.name}/0.png"
    assert job.status == Job.Status.FAILED
    assert missing in job.error and missing in run.error
    assert "Traceback" in run.logs and missing in run.logs and "training colours run 1" in run.logs
    assert run.finished_at and run.epochs == []
    with tenant_scope(TENANT_A):
        assert not ModelVersion.objects.using("default").filter(training_run=run).exists()


def test_a_plugin_that_exits_on_import_in_the_worker_fails_the_run_and_the_worker_goes_on(
    client, settings, training_worker, live_folders
):
    # given: a model on "plugin", which loads here but exits on import in the worker
    settings.TRAINER_PLUGINS = {"plugin": "tests.training.test_core_registry:ConstantTrainer"}
    with tenant_scope(TENANT_A):
        data = make_image_data(live_folders[0])
    # when
    started = _start_training(client, data, trainer="plugin")
    job = _wait_for_end(started["job"]["id"], training_worker)
    # then: the run failed saying why, and the worker is still running
    run = _run(started["id"])
    assert job.status == Job.Status.FAILED
    assert "could not be loaded: SystemExit: this plugin exits on import" in run.error
    assert run.finished_at and training_worker.process.poll() is None


@pytest.mark.parametrize("trainer", ["sys:exit", "this:x", ".x:Y", "os:system"])
def test_a_trainer_path_sent_to_the_live_server_is_a_400_and_the_server_goes_on(
    make_token, live_asgi_server, live_folders, trainer
):
    # given
    with tenant_scope(TENANT_A):
        data = make_image_data(live_folders[0])
    wait_for_reader()
    headers = {"Authorization": f"Bearer {make_token(TENANT_A)}"}
    # when
    response = httpx.post(
        f"{live_asgi_server.url}/api/v1/projects/{data.project.pk}/models",
        json={"name": "bad", "trainer": trainer},
        headers=headers,
        timeout=30,
    )
    # then: a 400 on the trainer field; the server still serves, and never imported `this` (it prints the Zen)
    assert response.status_code == 400, response.text
    message = f"Unknown trainer {trainer!r}: use one of detector-faster-rcnn, detector-fcos, image-classifier."
    assert response.json() == {"message": message, "extra": {"fields": {"trainer": [message]}}}
    assert live_asgi_server.process.poll() is None
    assert httpx.get(f"{live_asgi_server.url}/healthz", timeout=10).status_code == 200
    assert "Beautiful is better than ugly" not in live_asgi_server.log()
