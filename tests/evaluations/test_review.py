"""The review queue (most errors) and the comparison of two evaluation runs, against what is computed here from the
same ObjectMatch rows; the rows are written as the evaluation job leaves them (that job is tested on its own)."""

import random
from dataclasses import dataclass, field

import pytest

from evaluations.models import ObjectMatch
from evaluations.review import evaluation_runs_compare, review_queue_create
from mlops.exceptions import ApplicationError, Conflict
from slices.models import SliceMember
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import evaluation_run_make, model_version_make, project_make
from tests.predictions.conftest import world  # noqa: F401  (a project with datarows and classes)

pytestmark = pytest.mark.django_db

CLASSES = ["car", "person", "bike"]


@dataclass
class Outcomes:
    """Per datarow, what a run's matches say: each label's outcome (by label id), and the false positives."""

    labels: dict[int, dict[int, str]] = field(default_factory=dict)
    false_positives: dict[int, int] = field(default_factory=dict)

    def errors(self, datarow_id: int) -> int:
        misses = sum(outcome == "fn" for outcome in self.labels.get(datarow_id, {}).values())
        return misses + self.false_positives.get(datarow_id, 0)


def _write_matches(world, run, outcomes: Outcomes, label_classes: dict[int, str]) -> None:
    """The rows the evaluation job writes: a label's TP or FN, the TP again from the prediction's side, an FP."""
    rows, prediction_id = [], 1
    for datarow_id, labels in outcomes.labels.items():
        for label_id, outcome in labels.items():
            class_id = world.class_id(label_classes[label_id])
            common = {"run": run, "datarow_id": datarow_id, "ontology_class_id": class_id}
            found = outcome == "tp"
            rows.append(
                ObjectMatch(
                    **common, side="label", outcome=outcome, label_id=label_id, iou=0.8 if found else 0.1, score=0.7
                )
            )
            if found:
                rows.append(
                    ObjectMatch(
                        **common, side="prediction", outcome="tp", prediction_id=prediction_id, iou=0.8, score=0.7
                    )
                )
                prediction_id += 1
    for datarow_id, count in outcomes.false_positives.items():
        for _ in range(count):
            rows.append(
                ObjectMatch(
                    run=run,
                    datarow_id=datarow_id,
                    ontology_class_id=world.class_id(CLASSES[0]),
                    side="prediction",
                    outcome="fp",
                    prediction_id=prediction_id,
                    iou=0.0,
                    score=0.4,
                )
            )
            prediction_id += 1
    ObjectMatch.objects.bulk_create(rows)


@pytest.fixture
def evaluated(world):
    """Two versions evaluated on the same slice of 40 images: 0 to 4 labels each, each found or missed by each run
    at random, 0 to 3 false positives each, so error counts tie often; one image with no label and no error."""
    rng = random.Random(11)
    rows = world.rows(40)
    scope = world.ids_slice("test images", rows)
    baseline_version, candidate_version = world.model_version(version="1"), world.model_version(version="2")
    label_classes, baseline, candidate = {}, Outcomes(), Outcomes()
    label_id = 1000
    for datarow_id in rows[1:]:
        for outcomes in (baseline, candidate):
            outcomes.labels[datarow_id] = {}
            outcomes.false_positives[datarow_id] = rng.randint(0, 3)
        for _ in range(rng.randint(0, 4)):
            label_id += 1
            label_classes[label_id] = rng.choice(CLASSES)
            for outcomes in (baseline, candidate):
                outcomes.labels[datarow_id][label_id] = rng.choice(["tp", "tp", "fn"])
    runs = {}
    for name, version, outcomes, metrics in (
        ("baseline", baseline_version, baseline, {"map": 0.4, "per_class": {"car": {"ap": 0.5}, "person": {"ap": -1}}}),
        (
            "candidate",
            candidate_version,
            candidate,
            {"map": 0.45, "per_class": {"car": {"ap": 0.6}, "bike": {"ap": 0.2}}},
        ),
    ):
        runs[name] = evaluation_run_make(model_version=version, slice=scope, metrics=metrics)
        _write_matches(world, runs[name], outcomes, label_classes)
    return runs["baseline"], runs["candidate"], rows, baseline, candidate


def _most_errors(outcomes: Outcomes, rows: list[int]) -> list[int]:
    erring = [datarow_id for datarow_id in rows if outcomes.errors(datarow_id)]
    return sorted(erring, key=lambda datarow_id: (-outcomes.errors(datarow_id), datarow_id))


def _disagreeing(baseline: Outcomes, candidate: Outcomes) -> set[int]:
    return {
        datarow_id
        for datarow_id, labels in baseline.labels.items()
        if any(candidate.labels[datarow_id][label_id] != outcome for label_id, outcome in labels.items())
    }


def _members(slice_id: int) -> set[int]:
    return set(SliceMember.objects.filter(slice_id=slice_id).values_list("datarow_id", flat=True))


@pytest.mark.parametrize("k", [3, 10, 1000])
def test_the_review_queue_holds_the_k_images_with_the_most_errors(principal, evaluated, k):
    # given
    baseline, _, rows, outcomes, _ = evaluated
    expected = _most_errors(outcomes, rows)
    # when
    queue = review_queue_create(principal=principal, evaluation_run=baseline, name=f"review {k}", k=k)
    # then
    assert _members(queue.pk) == set(expected[:k])
    assert queue.member_count == min(k, len(expected))


def test_the_fixture_ties_error_counts_and_has_images_without_errors(evaluated):
    _, _, rows, outcomes, _ = evaluated
    counts = [outcomes.errors(datarow_id) for datarow_id in _most_errors(outcomes, rows)[:11]]
    assert counts[9] == counts[10]  # the cut of k=10 falls inside a tie, broken by datarow id
    assert len(_most_errors(outcomes, rows)) < len(rows)


def test_a_review_queue_needs_a_succeeded_run(world, principal):
    running = evaluation_run_make(model_version=world.model_version(), status="running")
    with pytest.raises(Conflict, match="has not succeeded"):
        review_queue_create(principal=principal, evaluation_run=running, name="q", k=5)


def test_comparing_two_runs_gives_ap_deltas_and_the_images_where_a_label_is_found_by_one_only(principal, evaluated):
    # given
    baseline, candidate, _, baseline_outcomes, candidate_outcomes = evaluated
    # when
    comparison = evaluation_runs_compare(
        principal=principal, baseline=baseline, candidate=candidate, disagreement_slice_name="differ"
    )
    # then
    assert comparison["baseline_map"] == 0.4 and comparison["candidate_map"] == 0.45
    assert comparison["map_delta"] == pytest.approx(0.05)
    assert comparison["per_class"] == [
        {"class": "bike", "baseline_ap": None, "candidate_ap": 0.2, "delta": None},
        {"class": "car", "baseline_ap": 0.5, "candidate_ap": 0.6, "delta": pytest.approx(0.1)},
        {"class": "person", "baseline_ap": None, "candidate_ap": None, "delta": None},
    ]
    expected = _disagreeing(baseline_outcomes, candidate_outcomes)
    assert 0 < len(expected) < 39
    assert _members(comparison["disagreement_slice"].pk) == expected


def test_runs_that_cannot_be_compared_are_refused_naming_the_field(world, principal, evaluated):
    baseline, candidate = evaluated[0], evaluated[1]
    running = evaluation_run_make(model_version=candidate.model_version, slice=candidate.slice, status="running")
    other_iou = evaluation_run_make(model_version=candidate.model_version, slice=candidate.slice, iou_threshold=0.75)
    other_splits = evaluation_run_make(model_version=candidate.model_version, slice=candidate.slice, splits=[3])
    cases = [
        (running, candidate, "baseline_id", "has not succeeded"),
        (baseline, running, "candidate_id", "has not succeeded"),
        (baseline, other_iou, "candidate_id", "iou_threshold"),
        (baseline, other_splits, "candidate_id", "splits"),
        (baseline, baseline, "candidate_id", "two different"),
    ]
    for one, other, named, why in cases:
        with pytest.raises(ApplicationError, match=why) as refused:
            evaluation_runs_compare(principal=principal, baseline=one, candidate=other, disagreement_slice_name="x")
        assert named in refused.value.extra["fields"]


# Over REST


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


def test_the_review_queue_over_rest(client, world, evaluated):
    # given
    baseline, _, rows, outcomes, _ = evaluated
    url = f"/api/v1/projects/{world.project.pk}/evaluation-runs/{baseline.pk}/review-queue"
    # when
    answer = client.post(url, {"name": "to review", "k": 5}, format="json")
    zero = client.post(url, {"name": "none", "k": 0}, format="json")
    missing = client.post(url.replace(f"/{baseline.pk}/", "/999999999/"), {"name": "x", "k": 5}, format="json")
    # then
    assert answer.status_code == 201, answer.content
    assert answer.json()["member_count"] == 5 and answer.json()["kind"] == "ids"
    with tenant_scope(TENANT_A):  # the requests left the connection in the public schema
        assert _members(answer.json()["id"]) == set(_most_errors(outcomes, rows)[:5])
    assert zero.status_code == 400 and "k" in zero.json()["extra"]["fields"]
    assert missing.status_code == 404


def test_the_comparison_over_rest(client, world, evaluated):
    # given
    baseline, candidate, _, baseline_outcomes, candidate_outcomes = evaluated
    url = f"/api/v1/projects/{world.project.pk}/evaluation-runs/compare"
    # when
    answer = client.post(url, {"baseline_id": baseline.pk, "candidate_id": candidate.pk}, format="json")
    # then
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["baseline_id"], body["candidate_id"]) == (baseline.pk, candidate.pk)
    assert body["per_class"][1] == {
        "class": "car",
        "baseline_ap": 0.5,
        "candidate_ap": 0.6,
        "delta": pytest.approx(0.1),
    }
    assert body["disagreement_slice"]["name"] == f"evaluation runs {baseline.pk} and {candidate.pk} disagree"
    with tenant_scope(TENANT_A):
        assert _members(body["disagreement_slice"]["id"]) == _disagreeing(baseline_outcomes, candidate_outcomes)


def test_a_run_of_another_project_is_a_400_naming_the_field(client, world, evaluated):
    # given a run of another project of the same workspace
    baseline = evaluated[0]
    with tenant_scope(TENANT_A):
        elsewhere = evaluation_run_make(model_version=model_version_make(project=project_make()))
    url = f"/api/v1/projects/{world.project.pk}/evaluation-runs/compare"
    # when
    answer = client.post(url, {"baseline_id": baseline.pk, "candidate_id": elsewhere.pk}, format="json")
    # then
    assert answer.status_code == 400
    assert "candidate_id" in answer.json()["extra"]["fields"]
