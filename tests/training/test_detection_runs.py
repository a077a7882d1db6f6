"""Detector models and runs over REST, the job run eagerly in the test process (the real detector, a few shapes):
training end to end, box predictions searchable as soon as they are written, and starting weights checked when
the config is validated (what can be checked without torch) and when the run starts (whether they fit)."""

import io
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from datasets.models import Prediction
from jobs.models import Job
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.training.conftest import TINY_DETECTOR_CONFIG, make_box_data
from trainers.detection_training import build_detector
from trainers.detector import validate_config
from training.models import TrainingBox, TrainingExample, TrainingRun

pytestmark = pytest.mark.django_db

FCOS_LOSS_PARTS = {"classification", "bbox_regression", "bbox_ctrness"}


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.fixture
def data(storage):
    with tenant_scope(TENANT_A):
        return make_box_data(storage)


def _model(client, data, **hyperparameters) -> dict:
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models",
        {"name": "shapes", "trainer": "detector-fcos", "hyperparameters": {**TINY_DETECTOR_CONFIG, **hyperparameters}},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _train(client, data, django_capture_on_commit_callbacks, **hyperparameters) -> dict:
    model = _model(client, data, **hyperparameters)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs", {"slice_id": data.slice.pk}, format="json"
        )
    assert started.status_code == 202, started.content
    return client.get(f"/api/v1/projects/{data.project.pk}/training-runs/{started.json()['id']}").json()


def test_a_detector_run_trains_on_the_box_labels_and_its_version_predicts_searchable_boxes(
    client, data, celery_eager, django_capture_on_commit_callbacks
):
    # when
    run = _train(client, data, django_capture_on_commit_callbacks)
    # then the run trained on the snapshot of every box, and reported each loss part per step
    assert run["status"] == "succeeded", run["error"]
    assert (run["train_examples"], run["validation_examples"]) == (6, 2)
    assert run["classes"] == data.classes and run["device"] == "cpu"
    with tenant_scope(TENANT_A):
        labelled = set(TrainingBox.objects.filter(run_id=run["id"]).values_list("datarow_id", flat=True))
        assert labelled == set(TrainingExample.objects.filter(run_id=run["id"]).values_list("datarow_id", flat=True))
        assert TrainingBox.objects.filter(run_id=run["id"]).count() == data.box_count
    counters = run["job"]["counters"]
    assert set(counters["loss_parts"]) == FCOS_LOSS_PARTS and counters["accuracy"] is None
    assert counters["loss"] == pytest.approx(sum(counters["loss_parts"].values()), rel=1e-4)
    assert sorted(run["artifact_files"]) == ["classes.json", "config.json", "metrics.json", "model.safetensors"]
    assert run["epochs"][0]["validation_loss"] is not None

    # when: its version predicts the dataset, keeping every box however low its score
    base = f"/api/v1/projects/{data.project.pk}"
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"{base}/prediction-runs",
            {
                "model_version_id": run["model_version_id"],
                "dataset_id": data.dataset.pk,
                "top_k": 3,
                "score_threshold": 0.0,
            },
            format="json",
        )
    assert started.status_code == 202, started.content
    predicted = client.get(f"{base}/prediction-runs/{started.json()['id']}").json()
    # then every image has its boxes, at most top_k each, inside the image
    assert predicted["status"] == "succeeded", predicted["job"]["error"]
    assert (predicted["datarow_count"], predicted["score_threshold"]) == (8, 0.0)
    with tenant_scope(TENANT_A):
        boxes = list(
            Prediction.objects.filter(model_version_id=run["model_version_id"]).values(
                "datarow_id", "kind", "ontology_class__name", "x", "y", "w", "h", "area"
            )
        )
    assert len(boxes) == predicted["prediction_count"] > 0
    per_row = {}
    for box in boxes:
        per_row[box["datarow_id"]] = per_row.get(box["datarow_id"], 0) + 1
        assert box["kind"] == "box" and box["ontology_class__name"] in data.classes
        assert box["x"] >= 0 and box["y"] >= 0 and box["area"] == pytest.approx(box["w"] * box["h"])
    assert max(per_row.values()) <= 3

    # when: a search asks for the rows with a predicted box of a class, of some width, the moment the run is done
    name = boxes[0]["ontology_class__name"]
    query = f"prediction(model = 'shapes@1' AND class = '{name}' AND kind = 'box' AND w > 0)"
    found = client.post(f"{base}/search", {"query": query, "page_size": 100}, format="json")
    # then it finds exactly the rows with such a box
    assert found.status_code == 200, found.content
    expected = {box["datarow_id"] for box in boxes if box["ontology_class__name"] == name and box["w"] > 0}
    assert {row["id"] for row in found.json()["results"]} == expected
    wide = max(box["w"] for box in boxes)
    narrowed = client.post(
        f"{base}/search", {"query": f"prediction(model = 'shapes@1' AND w >= {wide})"}, format="json"
    ).json()["results"]
    assert {row["id"] for row in narrowed} == {box["datarow_id"] for box in boxes if box["w"] >= wide}


def _weights_file(path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


class _Callable:
    def __reduce__(self):
        return (print, ("ran",))


@pytest.mark.parametrize("case", ["http", "outside", "missing", "pickle", "junk", "not-a-string"])
def test_bad_init_weights_are_a_400_on_the_field_before_anything_is_queued(client, data, storage, tmp_path, case):
    inside = storage / "weights"
    init_weights = {
        "http": "http://127.0.0.1:9/model.safetensors",  # a web address could be a model hub
        "outside": _weights_file(tmp_path / "elsewhere" / "model.safetensors", b"x" * 64),
        "missing": str(inside / "nothing-here.safetensors"),
        "pickle": _weights_file(inside / "legacy.pt", pickle.dumps(_Callable())),  # a bare pickle could run code
        "junk": _weights_file(inside / "junk.bin", b"\x00" * 64),
        "not-a-string": 42,
    }[case]
    with tenant_scope(TENANT_A):
        jobs_before = Job.objects.count()
    # when: on the model's hyperparameters, and on a run's config override
    model = client.post(
        f"/api/v1/projects/{data.project.pk}/models",
        {"name": "bad", "trainer": "detector-fcos", "hyperparameters": {"init_weights": init_weights}},
        format="json",
    )
    good = _model(client, data)
    run = client.post(
        f"/api/v1/projects/{data.project.pk}/models/{good['id']}/runs",
        {"slice_id": data.slice.pk, "config": {"init_weights": init_weights}},
        format="json",
    )
    # then
    assert model.status_code == 400, model.content
    assert list(model.json()["extra"]["fields"]) == ["hyperparameters.init_weights"]
    assert "init_weights" in model.json()["message"]
    assert run.status_code == 400, run.content
    assert list(run.json()["extra"]["fields"]) == ["config.init_weights"]
    with tenant_scope(TENANT_A):
        assert Job.objects.count() == jobs_before and not TrainingRun.objects.exists()


def test_weights_of_another_class_count_fail_the_run_naming_the_tensors_that_do_not_fit(
    client, data, storage, celery_eager, django_capture_on_commit_callbacks
):
    # given: an FCOS state_dict of this architecture but five classes, not three
    config = validate_config(TINY_DETECTOR_CONFIG)
    five = build_detector("fcos", 5, config).state_dict()
    path = storage / "weights" / "five-classes.safetensors"
    path.parent.mkdir()
    save_file({name: tensor.contiguous() for name, tensor in five.items()}, path)
    # when
    run = _train(client, data, django_capture_on_commit_callbacks, init_weights=str(path))
    # then the run failed before training a step, saying which tensors do not fit and why
    assert run["status"] == "failed"
    assert f"init_weights {path} does not fit this architecture and class count" in run["error"]
    assert "head.classification_head.cls_logits.weight (6, 32, 3, 3) (the model's is (4, 32, 3, 3))" in run["error"]
    assert run["epochs"] == [] and run["model_version_id"] is None


def test_a_torch_checkpoint_holding_more_than_tensors_fails_the_run_without_running_it(
    client, data, storage, celery_eager, django_capture_on_commit_callbacks, capsys
):
    # given: a zip checkpoint (it passes the sniffing at validation) whose pickle calls print when loaded
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(1), "hook": _Callable()}, buffer)
    assert zipfile.is_zipfile(io.BytesIO(buffer.getvalue()))
    path = storage / "weights" / "hooked.pt"
    path.parent.mkdir()
    path.write_bytes(buffer.getvalue())
    # when
    run = _train(client, data, django_capture_on_commit_callbacks, init_weights=str(path))
    # then
    assert run["status"] == "failed"
    assert "holds more than tensors" in run["error"]
    assert "ran" not in capsys.readouterr().out
