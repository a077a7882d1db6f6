"""Evaluation runs over REST: started as a job (run eagerly here), their metrics equal pycocotools' on the same boxes,
their matches listed and filtered, and every bad request a 400 naming its field.

The job reads and writes on a connection of its own, so the data is committed (transactional tests)."""

import numpy as np
import pytest

from datasets.models import DataRow, Label, OntologyClass, Prediction
from evaluations.models import ObjectMatch
from slices.models import SliceMember, Split
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.conftest import wait_for_reader
from tests.evaluations.test_matching import STATS, cocoeval, random_world
from tests.factories import dataset_make, model_version_make, project_make, slice_make

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants", "celery_eager"),
]


def make_detection_world(seed: int = 7, images: int = 30):
    """random_world's boxes as a project's datarows, box labels (crowds as COCO imports store them) and box
    predictions of one version; a slice of every datarow, the first third in the test split."""
    truths, detections = random_world(seed, images=images)
    project = project_make()
    dataset = dataset_make(project=project)
    classes = {c: OntologyClass.objects.create(project=project, name=f"class {c}").pk for c in range(1, 5)}
    rows = DataRow.objects.bulk_create(
        DataRow(dataset=dataset, external_id=f"r{i}", uri=f"s3://b/{i}.jpg") for i in range(images)
    )
    datarow = {i + 1: row.pk for i, row in enumerate(rows)}
    labels = Label.objects.bulk_create(
        Label(
            datarow_id=datarow[int(image)], ontology_class_id=classes[int(c)], kind="box", x=b[0], y=b[1], w=b[2],
            h=b[3], area=float(a), attributes={"iscrowd": int(k)}, source="test", updated_by="test",
        )
        for image, c, b, a, k in zip(truths.image, truths.class_id, truths.box, truths.area, truths.crowd, strict=True)
    )  # fmt: skip
    version = model_version_make(project=project, name="detector")
    predictions = Prediction.objects.bulk_create(
        Prediction(
            datarow_id=datarow[int(image)], model_version=version, ontology_class_id=classes[int(c)], kind="box",
            x=b[0], y=b[1], w=b[2], h=b[3], area=b[2] * b[3], score=float(s),
        )
        for image, c, b, s in zip(detections.image, detections.class_id, detections.box, detections.score, strict=True)
    )  # fmt: skip
    members = slice_make(project=project, name="all")
    SliceMember.objects.bulk_create(
        SliceMember(slice=members, datarow_id=pk, split=Split.TEST if i < images // 3 else Split.TRAIN)
        for i, pk in enumerate(datarow.values())
    )
    return project, version, members, truths, detections, labels, predictions


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.fixture
def world():
    with tenant_scope(TENANT_A):
        yield make_detection_world()


def _start(client, project, **body):
    wait_for_reader()
    return client.post(f"/api/v1/projects/{project.pk}/evaluation-runs", body, format="json")


def test_a_run_stores_pycocotools_metrics_and_every_objects_match(client, world, monkeypatch):
    # given: images read 7 at a time, so the metrics gather several chunks
    project, version, members, truths, detections, labels, predictions = world
    from evaluations import services

    monkeypatch.setattr(services, "EVALUATION_CHUNK_IMAGES", 7)
    reference = cocoeval(truths, detections)
    # when
    started = _start(client, project, model_version_id=version.pk, slice_id=members.pk)
    # then
    assert started.status_code == 202, started.content
    wait_for_reader()
    run = client.get(f"/api/v1/projects/{project.pk}/evaluation-runs/{started.json()['id']}").json()
    assert run["status"] == "succeeded", run["job"]["error"]
    assert run["job"]["progress"] == {"done": 30, "total": 30}
    assert (run["image_count"], run["ground_truth_count"], run["prediction_count"]) == (
        30,
        len(labels),
        len(predictions),
    )
    for name, value in zip(STATS, reference.stats, strict=True):
        assert (run["metrics"][name] if run["metrics"][name] is not None else -1) == pytest.approx(value, abs=1e-12)
    assert run["metrics"]["per_class"]["class 1"]["recall"][:3] == [0.0, 0.01, 0.02]
    with tenant_scope(TENANT_A):
        rows = ObjectMatch.objects.using("default").filter(run_id=run["id"])
        regular = sum(1 for label in labels if not label.attributes["iscrowd"])
        assert rows.filter(side="label").count() == regular
        assert rows.filter(side="prediction", outcome="tp").count() == rows.filter(side="label", outcome="tp").count()
        tp = rows.filter(side="prediction", outcome="tp").first()
        twin = rows.get(side="label", label_id=tp.label_id)
        assert (twin.outcome, twin.prediction_id, twin.iou) == ("tp", tp.prediction_id, tp.iou)
        assert run["metrics"]["tp"] == rows.filter(side="prediction", outcome="tp").count()


def test_matches_are_listed_by_page_and_filtered_by_outcome_and_class(client, world):
    # given
    project, version, members, *_ = world
    run_id = _start(client, project, model_version_id=version.pk, slice_id=members.pk, iou_threshold=0.3).json()["id"]
    wait_for_reader()
    url = f"/api/v1/projects/{project.pk}/evaluation-runs/{run_id}/matches"
    with tenant_scope(TENANT_A):
        class_id = OntologyClass.objects.using("default").get(project=project, name="class 2").pk
    # when
    first = client.get(url, {"page_size": 5}).json()
    second = client.get(url, {"page_size": 5, "cursor": first["next_cursor"]}).json()
    misses = client.get(url, {"outcome": "fn", "ontology_class_id": class_id, "page_size": 500}).json()
    # then
    assert len(first["results"]) == 5 and {m["id"] for m in first["results"]}.isdisjoint(
        m["id"] for m in second["results"]
    )
    assert misses["results"] and all(
        (m["outcome"], m["side"], m["ontology_class_id"]) == ("fn", "label", class_id) for m in misses["results"]
    )
    with tenant_scope(TENANT_A):
        expected = (
            ObjectMatch.objects.using("default").filter(run_id=run_id, outcome="fn", ontology_class_id=class_id).count()
        )
    assert len(misses["results"]) == expected


def test_runs_are_listed_and_a_split_is_evaluated_alone(client, world):
    project, version, members, *_ = world
    started = _start(client, project, model_version_id=version.pk, slice_id=members.pk, splits=["test"])
    assert started.status_code == 202, started.content
    wait_for_reader()
    listed = client.get(f"/api/v1/projects/{project.pk}/evaluation-runs").json()["results"]
    assert [(r["id"], r["splits"], r["image_count"]) for r in listed] == [(started.json()["id"], ["test"], 10)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"iou_threshold": 0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"splits": ["validation"]}, "splits"),
        ({"splits": ["nonsense"]}, "splits"),
        ({"model_version_id": 10**9}, "model_version_id"),
        ({"slice_id": 10**9}, "slice_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_request_is_a_400_naming_its_field_and_starts_nothing(client, world, body, field):
    project, version, members, *_ = world
    response = _start(client, project, **{"model_version_id": version.pk, "slice_id": members.pk, **body})
    assert response.status_code == 400, response.content
    assert field in response.json()["extra"]["fields"]
    with tenant_scope(TENANT_A):
        assert not ObjectMatch.objects.using("default").filter(run__model_version=version).exists()
        assert not version.evaluation_runs.using("default").exists()


def test_a_version_without_box_predictions_in_scope_or_another_projects_ids_are_400s(client, world):
    project, version, members, *_ = world
    with tenant_scope(TENANT_A):
        idle = model_version_make(project=project, name="idle")
        other = project_make()
        foreign_version = model_version_make(project=other, name="foreign")
        foreign_slice = slice_make(project=other)
    for body, field in (
        ({"model_version_id": idle.pk, "slice_id": members.pk}, "model_version_id"),
        ({"model_version_id": foreign_version.pk, "slice_id": members.pk}, "model_version_id"),
        ({"model_version_id": version.pk, "slice_id": foreign_slice.pk}, "slice_id"),
    ):
        response = _start(client, project, **body)
        assert response.status_code == 400, response.content
        assert list(response.json()["extra"]["fields"]) == [field]


def test_another_projects_run_is_a_404(client, world):
    project, version, members, *_ = world
    run_id = _start(client, project, model_version_id=version.pk, slice_id=members.pk).json()["id"]
    with tenant_scope(TENANT_A):
        other = project_make()
    wait_for_reader()
    assert client.get(f"/api/v1/projects/{other.pk}/evaluation-runs/{run_id}").status_code == 404
    assert client.get(f"/api/v1/projects/{other.pk}/evaluation-runs/{run_id}/matches").status_code == 404


def test_a_failed_run_leaves_no_match(client, world, monkeypatch):
    # given: the metrics step fails after every chunk's matches were copied
    project, version, members, *_ = world
    from evaluations import services

    def broken(self, class_names):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.CocoEvaluation, "summary", broken)
    monkeypatch.setattr(services, "EVALUATION_CHUNK_IMAGES", 7)
    # when
    started = _start(client, project, model_version_id=version.pk, slice_id=members.pk)
    # then
    wait_for_reader()
    run = client.get(f"/api/v1/projects/{project.pk}/evaluation-runs/{started.json()['id']}").json()
    assert run["status"] == "failed" and "disk on fire" in run["job"]["error"]
    with tenant_scope(TENANT_A):
        assert not ObjectMatch.objects.using("default").filter(run_id=run["id"]).exists()
    assert run["metrics"] == {}
    assert np.isfinite(run["job"]["progress"]["done"])


def test_a_run_past_its_prediction_bound_fails_saying_so_and_leaves_no_match(client, world, monkeypatch):
    project, version, members, *_ = world
    from evaluations import services

    monkeypatch.setattr(services, "EVALUATION_MAX_PREDICTIONS", 10)
    started = _start(client, project, model_version_id=version.pk, slice_id=members.pk)
    wait_for_reader()
    run = client.get(f"/api/v1/projects/{project.pk}/evaluation-runs/{started.json()['id']}").json()
    assert run["status"] == "failed" and "more than 10 box predictions" in run["job"]["error"]
    with tenant_scope(TENANT_A):
        assert not ObjectMatch.objects.using("default").filter(run_id=run["id"]).exists()
