"""Prediction runs, metrics, comparisons and selections over REST; jobs run eagerly with the real trainer."""

import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import accuracy_score

from datasets.models import Dataset, Label, Prediction
from predictions.models import PredictionRun
from slices.models import SliceMember, Split
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import model_version_make, slice_make
from tests.training.conftest import TINY_CONFIG, make_image_data
from tests.training.malicious_checkpoint import write_malicious_checkpoint
from trainers.interface import Example
from trainers.registry import get_trainer
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.fixture
def trained(client, storage, celery_eager, django_capture_on_commit_callbacks):
    """Image data and a model version trained on it (the run's job already succeeded)."""
    with tenant_scope(TENANT_A):
        data = make_image_data(storage)
    base = f"/api/v1/projects/{data.project.pk}"
    model = client.post(f"{base}/models", {"name": "colours", "hyperparameters": TINY_CONFIG}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        run = client.post(f"{base}/models/{model['id']}/runs", {"slice_id": data.slice.pk}, format="json").json()
    run = client.get(f"{base}/training-runs/{run['id']}").json()
    assert run["status"] == "succeeded", run["error"]
    return data, base, run["model_version_id"]


def _set_trainer(version_id: int, trainer: str) -> None:
    with tenant_scope(TENANT_A):
        model = TrainingRun.objects.get(model_version__pk=version_id).model
        model.trainer = trainer
        model.save(update_fields=["trainer"])


def _predict(client, base, django_capture_on_commit_callbacks, **body) -> dict:
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(f"{base}/prediction-runs", body, format="json")
    assert started.status_code == 202, started.content
    return client.get(f"{base}/prediction-runs/{started.json()['id']}").json()


def test_a_prediction_run_writes_the_trainers_top_k_for_every_datarow(
    client, trained, django_capture_on_commit_callbacks
):
    # given
    data, base, version_id = trained
    # when
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=2,
        batch_size=6,
    )
    # then
    assert run["status"] == "succeeded", run["job"]["error"]
    assert (run["datarow_count"], run["prediction_count"]) == (16, 32)
    assert run["job"]["progress"] == {"done": 16, "total": 16}
    with tenant_scope(TENANT_A):
        stored = {}
        for p in Prediction.objects.filter(model_version_id=version_id).order_by("datarow_id", "-score"):
            assert p.run_id == run["id"] and p.kind == "classification"
            stored.setdefault(p.datarow_id, []).append((p.ontology_class.name, p.score))
        assert Dataset.objects.get(pk=data.dataset.pk).prediction_count == 32
        training_run = TrainingRun.objects.get(model_version__pk=version_id)
        items = [
            Example(key=datarow_id, uri=data_uri, target=-1)
            for datarow_id, data_uri in data.dataset.datarows.order_by("id").values_list("id", "uri")
        ]
    # exactly what the trainer's own predict gives for the same artifacts
    expected = {
        key: [(training_run.classes[index][1], score) for index, score in top]
        for batch in get_trainer("image-classifier").predict(
            artifact_dir=Path(training_run.artifact_uri), items=items, opener=_open, batch_size=16, top_k=2
        )
        for key, top in batch
    }
    assert stored.keys() == expected.keys() == set(data.datarow_ids)
    for datarow_id, top in stored.items():
        assert [name for name, _ in top] == [name for name, _ in expected[datarow_id]]
        assert [score for _, score in top] == pytest.approx([score for _, score in expected[datarow_id]], abs=1e-5)


def _open(uri: str):
    return open(uri, "rb")


def test_predicting_again_on_a_slice_replaces_that_versions_predictions_there(
    client, trained, django_capture_on_commit_callbacks
):
    # given
    data, base, version_id = trained
    first = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=2,
    )
    with tenant_scope(TENANT_A):
        few = data.datarow_ids[:5]
        from slices.services import slice_create_from_ids

        sliced = slice_create_from_ids(project=data.project, name="few", created_by="t", datarow_ids=few)
    # when
    second = _predict(
        client, base, django_capture_on_commit_callbacks, model_version_id=version_id, slice_id=sliced.pk, top_k=1
    )
    # then
    assert (second["datarow_count"], second["prediction_count"]) == (5, 5)
    with tenant_scope(TENANT_A):
        by_run = {
            r: set(
                Prediction.objects.filter(model_version_id=version_id, run_id=r).values_list("datarow_id", flat=True)
            )
            for r in (first["id"], second["id"])
        }
        assert by_run[second["id"]] == set(few)
        assert by_run[first["id"]] == set(data.datarow_ids) - set(few)
        assert Prediction.objects.filter(model_version_id=version_id).count() == 11 * 2 + 5
        assert Dataset.objects.get(pk=data.dataset.pk).prediction_count == 11 * 2 + 5


def test_metrics_selection_and_comparison_over_rest(client, trained, django_capture_on_commit_callbacks):
    # given: predictions of the trained version, and an imported version that says "red" everywhere
    data, base, version_id = trained
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=2,
    )
    with tenant_scope(TENANT_A):
        constant = model_version_make(project=data.project, name="always-red", version="1")
        red = Label.objects.filter(datarow__dataset=data.dataset, ontology_class__name="red").first().ontology_class
        Prediction.objects.bulk_create(
            Prediction(datarow_id=r, model_version=constant, ontology_class=red, score=1.0, kind="classification")
            for r in data.datarow_ids
        )
        top1 = {}
        for p in Prediction.objects.filter(model_version_id=version_id).order_by("datarow_id", "-score", "id"):
            top1.setdefault(p.datarow_id, (p.ontology_class.name, p.score))
        validation = set(
            SliceMember.objects.filter(slice=data.slice, split=Split.VALIDATION).values_list("datarow_id", flat=True)
        )
    # when
    metrics = client.get(
        f"{base}/model-versions/{version_id}/metrics", {"slice_id": data.slice.pk, "splits": "validation"}
    )
    selected = client.post(
        f"{base}/prediction-runs/{run['id']}/selections",
        {"name": "unsure", "strategy": "least_confidence", "k": 3},
        format="json",
    )
    compared = client.post(
        f"{base}/model-versions/compare",
        {"baseline_id": constant.pk, "candidate_id": version_id, "disagreement_slice_name": "trained-vs-red"},
        format="json",
    )
    no_boxes = client.get(f"{base}/model-versions/{version_id}/detection-metrics")
    too_many = client.post(
        f"{base}/prediction-runs/{run['id']}/selections",  # past bigint: was a 500 from SQL
        {"name": "all", "strategy": "least_confidence", "k": 2**63},
        format="json",
    )
    # then
    assert too_many.status_code == 400 and list(too_many.json()["extra"]["fields"]) == ["k"]
    assert metrics.status_code == 200, metrics.content
    assert metrics.json()["datarows"] == len(validation) == 4
    assert metrics.json()["accuracy"] == pytest.approx(
        accuracy_score([data.classes[r] for r in sorted(validation)], [top1[r][0] for r in sorted(validation)])
    )
    assert selected.status_code == 201, selected.content
    least_sure = sorted(top1, key=lambda r: (top1[r][1], r))[:3]
    with tenant_scope(TENANT_A):
        assert set(
            SliceMember.objects.filter(slice_id=selected.json()["id"]).values_list("datarow_id", flat=True)
        ) == set(least_sure)
    assert compared.status_code == 201, compared.content
    body = compared.json()
    assert body["baseline"]["accuracy"] == pytest.approx(0.5)
    assert body["disagreement_slice"]["member_count"] == sum(1 for name, _ in top1.values() if name != "red")
    red_recall = body["candidate"]["per_class"]["red"]["recall"]
    assert body["per_class_deltas"]["red"]["recall"] == pytest.approx(red_recall - 1)
    assert no_boxes.status_code == 200 and no_boxes.json()["map"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"top_k": 3}, "top_k"),  # the model knows 2 classes
        ({"slice_id": "SLICE"}, "slice_id"),  # both a slice and a dataset
    ],
)
def test_a_prediction_run_that_cannot_run_is_refused(client, trained, body, field):
    data, base, version_id = trained
    body = {
        "model_version_id": version_id,
        "dataset_id": data.dataset.pk,
        **{key: data.slice.pk if value == "SLICE" else value for key, value in body.items()},
    }
    response = client.post(f"{base}/prediction-runs", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["extra"]["fields"]


def test_an_imported_version_has_nothing_to_predict_with(client, trained):
    data, base, _ = trained
    with tenant_scope(TENANT_A):
        imported = model_version_make(project=data.project, name="outside", version="7")
    response = client.post(
        f"{base}/prediction-runs", {"model_version_id": imported.pk, "dataset_id": data.dataset.pk}, format="json"
    )
    assert response.status_code == 400 and "model_version_id" in response.json()["extra"]["fields"]


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        ("RepeatingBatchTrainer", "that it was not given or had already predicted"),
        ("DroppingBatchTrainer", "returned no prediction for 4 of the 16 datarows"),
    ],
)
def test_a_trainer_that_repeats_or_drops_datarows_fails_the_run(
    client, trained, django_capture_on_commit_callbacks, settings, plugin, error
):
    # given: the trained version, now predicting through a plugin that replays or drops a batch (of 6, 6 and 4)
    data, base, version_id = trained
    settings.TRAINER_PLUGINS = {"plugin": f"tests.predictions.trainers:{plugin}"}
    _set_trainer(version_id, "plugin")
    # when
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=1,
        batch_size=6,
    )
    # then: the job failed saying why, and nothing was written twice
    assert run["status"] == "failed" and error in run["job"]["error"]
    with tenant_scope(TENANT_A):
        written = list(Prediction.objects.filter(model_version_id=version_id).values_list("datarow_id", flat=True))
    assert len(written) == len(set(written)) == run["datarow_count"] == run["prediction_count"]


def test_a_plugin_that_exits_when_the_worker_loads_it_fails_the_prediction_run(
    client, trained, django_capture_on_commit_callbacks, settings
):
    # given: the trained version's model now names a plugin whose import exits
    data, base, version_id = trained
    settings.TRAINER_PLUGINS = {"plugin": "tests.training.exiting_plugin:Trainer"}
    _set_trainer(version_id, "plugin")
    # when
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=1,
    )
    # then: the run failed saying why, having written nothing
    assert run["status"] == "failed"
    assert "could not be loaded: SystemExit: this plugin exits on import" in run["job"]["error"]
    assert run["prediction_count"] == 0


def test_a_model_whose_trainer_is_no_longer_registered_fails_the_prediction_run_listing_the_names(
    client, trained, django_capture_on_commit_callbacks
):
    # given: a model saved (before trainers were chosen by name only) with a dotted path as its trainer
    data, base, version_id = trained
    sys.modules.pop("this", None)
    _set_trainer(version_id, "this:x")
    # when
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=1,
    )
    # then
    assert run["status"] == "failed"
    assert (
        "Unknown trainer 'this:x': use one of detector-faster-rcnn, detector-fcos, image-classifier."
        in run["job"]["error"]
    )
    assert "this" not in sys.modules


def test_a_weights_file_that_carries_code_fails_the_prediction_run_without_running_it(
    client, trained, django_capture_on_commit_callbacks, tmp_path
):
    # given: the version's weights file now also carries a pickled payload
    data, base, version_id = trained
    with tenant_scope(TENANT_A):
        weights = Path(TrainingRun.objects.get(model_version__pk=version_id).artifact_uri) / "model.pt"
    marker = tmp_path / "payload-ran"
    write_malicious_checkpoint(weights, marker=marker, weights=torch.load(weights, weights_only=True))
    # when
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        dataset_id=data.dataset.pk,
        top_k=1,
    )
    # then
    assert run["status"] == "failed" and "Refusing to load model.pt: it holds more than tensors" in run["job"]["error"]
    assert not marker.exists() and run["prediction_count"] == 0


def test_a_prediction_run_predicts_only_the_splits_it_is_given(client, trained, django_capture_on_commit_callbacks):
    # given: the trained slice is split; its validation members
    data, base, version_id = trained
    with tenant_scope(TENANT_A):
        validation = set(
            SliceMember.objects.filter(slice_id=data.slice.pk, split=Split.VALIDATION).values_list(
                "datarow_id", flat=True
            )
        )
    # when
    run = _predict(
        client,
        base,
        django_capture_on_commit_callbacks,
        model_version_id=version_id,
        slice_id=data.slice.pk,
        splits=["validation"],
        top_k=1,
    )
    # then: the scope is the one metrics take (a slice and its splits), and only those rows are predicted
    assert run["status"] == "succeeded", run["job"]["error"]
    assert run["splits"] == ["validation"] and run["datarow_count"] == len(validation) > 0
    with tenant_scope(TENANT_A):
        assert set(Prediction.objects.filter(run_id=run["id"]).values_list("datarow_id", flat=True)) == validation


def test_prediction_run_splits_need_a_slice(client, trained):
    data, base, version_id = trained
    response = client.post(
        f"{base}/prediction-runs",
        {"model_version_id": version_id, "dataset_id": data.dataset.pk, "splits": ["test"]},
        format="json",
    )
    assert response.status_code == 400 and "splits" in response.json()["extra"]["fields"]


def test_a_prediction_run_over_splits_the_slice_has_no_members_in_is_refused_before_it_is_queued(client, trained):
    # given: the trained slice has train and validation members, none in test; and an empty ids slice
    data, base, version_id = trained
    with tenant_scope(TENANT_A):
        empty = slice_make(project=data.project, name="empty")
        runs_before = PredictionRun.objects.count()
    # when
    no_test = client.post(
        f"{base}/prediction-runs",
        {"model_version_id": version_id, "slice_id": data.slice.pk, "splits": ["test"]},
        format="json",
    )
    no_members = client.post(
        f"{base}/prediction-runs", {"model_version_id": version_id, "slice_id": empty.pk}, format="json"
    )
    # then: each a 400 on the field that left nothing to predict, and no run queued
    assert no_test.status_code == 400, no_test.content
    assert no_test.json()["extra"]["fields"] == {"splits": ["No members."]}
    assert no_test.json()["message"] == "Slice 'all' has no members in test: nothing to predict."
    assert no_members.status_code == 400, no_members.content
    assert no_members.json()["extra"]["fields"] == {"slice_id": ["No members."]}
    with tenant_scope(TENANT_A):
        assert PredictionRun.objects.count() == runs_before
