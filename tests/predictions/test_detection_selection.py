"""The box strategies (predictions/detection_selection.py), each against a ranking computed here from the same rows."""

import math
import random

import pytest

from mlops.exceptions import ApplicationError
from predictions.active_selection import Selection
from predictions.detection_selection import BOX_STRATEGIES
from predictions.services import selection_create
from slices.models import SliceMember
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import model_version_make, project_make

pytestmark = pytest.mark.django_db

CLASSES = ["car", "person"]
FLOOR = 0.3


def _random_box(rng) -> tuple[int, int, int, int]:
    return (rng.randint(0, 80), rng.randint(0, 80), rng.randint(5, 40), rng.randint(5, 40))


def _moved(rng, box) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return (
        x + rng.randint(-6, 6),
        y + rng.randint(-6, 6),
        max(1, w + rng.randint(-5, 5)),
        max(1, h + rng.randint(-5, 5)),
    )


@pytest.fixture
def detected(world):
    """A detector's finished run on 40 images (0 to 4 boxes each, scores on two decimals so that ties are common,
    some images with every box under the floor), the same boxes on 4 more images so that whole rankings tie, another
    version's boxes near the run's (moved, dropped, relabelled or added), and labels on some images."""
    rng = random.Random(7)
    version, other = world.model_version(version="2"), world.model_version(version="1")
    run = world.prediction_run(version)
    rows = world.rows(48)
    run_boxes: dict[int, list] = {}
    other_boxes: dict[int, list] = {}
    for datarow_id in rows[:40]:
        run_boxes[datarow_id] = [
            (rng.choice(CLASSES), _random_box(rng), round(rng.random(), 2)) for _ in range(rng.randint(1, 4))
        ]
    for copy, original in zip(rows[40:44], rows[:4], strict=True):
        run_boxes[copy] = list(run_boxes[original])
    for datarow_id in rows[:44]:
        kept = []
        for name, box, _ in run_boxes[datarow_id]:
            fate = rng.random()
            if fate < 0.15:
                continue
            kept.append((rng.choice(CLASSES) if fate < 0.3 else name, _moved(rng, box), round(rng.random(), 2)))
        if rng.random() < 0.3:
            kept.append((rng.choice(CLASSES), _random_box(rng), round(rng.random(), 2)))
        other_boxes[datarow_id] = kept
    # Rows 44-47: the other version's boxes on images the run found nothing on (not candidates).
    for datarow_id in rows[44:]:
        other_boxes[datarow_id] = [("car", _random_box(rng), 0.9)]
    for datarow_id, boxes in run_boxes.items():
        for name, box, score in boxes:
            world.predict_box(version, datarow_id, name, box, score, run=run)
    for datarow_id, boxes in other_boxes.items():
        for name, box, score in boxes:
            world.predict_box(other, datarow_id, name, box, score)
    labelled = set(rng.sample(rows, 20))
    for datarow_id in labelled:
        world.label(datarow_id, "car", box=(1, 1, 10, 10))
    return run, other, rows, run_boxes, other_boxes, labelled


def _iou(a, b) -> float:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def _binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p)) if 0 < p < 1 else 0.0


def _python_ranking(strategy: str, run_boxes: dict, other_boxes: dict, floor: float = FLOOR) -> list[int]:
    """Datarow ids, first picked first: the score of each strategy as its docstring defines it, ties by id."""
    scores = {}
    for datarow_id, boxes in run_boxes.items():
        confident = [box for box in boxes if box[2] >= floor]
        if strategy == "box_least_confidence":
            scores[datarow_id] = 1 - max(score for _, _, score in boxes)
        elif strategy == "box_entropy":
            if confident:
                scores[datarow_id] = sum(_binary_entropy(score) for _, _, score in confident) / len(confident)
        else:
            theirs = [box for box in other_boxes.get(datarow_id, []) if box[2] >= floor]
            best = [
                max([_iou(box, other) for name2, other, _ in them if name2 == name] or [0.0])
                for mine, them in ((confident, theirs), (theirs, confident))
                for name, box, _ in mine
            ]
            scores[datarow_id] = 1 - sum(best) / len(best) if best else 0.0
    return sorted(scores, key=lambda datarow_id: (-round(scores[datarow_id], 9), datarow_id))


def _members(selected) -> set[int]:
    return set(SliceMember.objects.filter(slice=selected).values_list("datarow_id", flat=True))


def _select(principal, run, strategy: str, k: int, **options):
    return selection_create(
        principal=principal,
        prediction_run=run,
        name=f"{strategy}-{k}-{len(options)}",
        pool_slice=options.pop("pool_slice", None),
        selection=Selection(strategy=strategy, k=k, score_floor=FLOOR, **options),
    )


@pytest.mark.parametrize("k", [3, 7, 1000])
@pytest.mark.parametrize("strategy", BOX_STRATEGIES)
def test_each_box_strategy_picks_the_k_images_a_python_computation_ranks_first(principal, detected, strategy, k):
    # given
    run, other, _, run_boxes, other_boxes, _ = detected
    expected = _python_ranking(strategy, run_boxes, other_boxes)
    version = {"other_model_version_id": other.pk} if strategy == "box_disagreement" else {}
    # when
    selected = _select(principal, run, strategy, k, **version)
    # then
    assert _members(selected) == set(expected[:k])
    assert selected.member_count == min(k, len(expected))


def test_the_fixture_holds_ties_and_images_the_strategies_leave_out(detected):
    """What the rankings above are checked on: tied scores at the cut, images without a confident box or a run box."""
    _, _, rows, run_boxes, other_boxes, _ = detected
    best = [max(score for *_, score in boxes) for boxes in run_boxes.values()]
    assert len(set(best)) < len(best)  # tied least-confidence scores, broken by datarow id
    assert len(_python_ranking("box_entropy", run_boxes, other_boxes)) < len(run_boxes)  # all boxes under the floor
    assert not set(rows[44:]) & set(_python_ranking("box_least_confidence", run_boxes, other_boxes))


def test_box_disagreement_is_zero_for_identical_versions_and_one_for_disjoint_ones(world, principal):
    # given images where the other version repeats the run's boxes, moves them apart, or has none above the floor
    version, other = world.model_version(version="2"), world.model_version(version="1")
    run = world.prediction_run(version)
    same, apart, unconfident = world.rows(3)
    for datarow_id in (same, apart, unconfident):
        world.predict_box(version, datarow_id, "car", (0, 0, 10, 10), 0.8, run=run)
    world.predict_box(other, same, "car", (0, 0, 10, 10), 0.6)
    world.predict_box(other, apart, "car", (50, 50, 10, 10), 0.6)
    world.predict_box(other, unconfident, "car", (0, 0, 10, 10), 0.1)
    # when the two most disagreeing are selected
    selected = _select(principal, run, "box_disagreement", 2, other_model_version_id=other.pk)
    # then the moved and the missing ones (score 1), not the repeated one (score 0)
    assert _members(selected) == {apart, unconfident}


def test_pool_and_unlabeled_only_restrict_the_box_candidates(world, principal, detected):
    # given
    run, other, rows, run_boxes, other_boxes, labelled = detected
    pool_rows = rows[:30]
    pool = world.ids_slice("pool", pool_rows)
    allowed = {r: boxes for r, boxes in run_boxes.items() if r in pool_rows and r not in labelled}
    for strategy in BOX_STRATEGIES:
        version = {"other_model_version_id": other.pk} if strategy == "box_disagreement" else {}
        # when
        selected = _select(
            principal,
            run,
            strategy,
            5,
            pool_slice=pool,
            pool_slice_id=pool.pk,
            unlabeled_only=True,
            **version,
        )
        # then
        assert _members(selected) == set(_python_ranking(strategy, allowed, other_boxes)[:5]), strategy


def test_random_draws_from_a_detectors_images(principal, detected):
    run, _, _, run_boxes, _, _ = detected
    selected = _select(principal, run, "random", 10, seed=3)
    assert selected.member_count == 10 and _members(selected) <= set(run_boxes)


@pytest.mark.parametrize(
    ("strategy", "options", "field"),
    [
        ("box_entropy", {"score_floor": 1.5}, "score_floor"),
        ("box_disagreement", {}, "other_model_version_id"),
        ("box_least_confidence", {"other_model_version_id": 1}, "other_model_version_id"),
        ("margin", {}, "strategy"),
    ],
)
def test_bad_box_selections_are_refused_naming_the_field(principal, detected, strategy, options, field):
    run = detected[0]
    with pytest.raises(ApplicationError) as refused:
        selection_create(
            principal=principal, prediction_run=run, name="x", selection=Selection(strategy=strategy, k=3, **options)
        )
    assert field in refused.value.extra["fields"]


def test_box_disagreement_with_the_runs_own_version_is_refused(principal, detected):
    run = detected[0]
    with pytest.raises(ApplicationError) as refused:
        _select(principal, run, "box_disagreement", 3, other_model_version_id=run.model_version_id)
    assert "other_model_version_id" in refused.value.extra["fields"]


def test_a_box_strategy_on_a_classifiers_run_is_refused(world, principal):
    version = world.model_version()
    run = world.prediction_run(version)
    world.predict(version, world.rows(1)[0], {"car": 0.7, "person": 0.3}, run=run)
    with pytest.raises(ApplicationError) as refused:
        _select(principal, run, "box_entropy", 3)
    assert "no box predictions" in refused.value.message and "strategy" in refused.value.extra["fields"]


# Over REST


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.mark.parametrize("strategy", BOX_STRATEGIES)
def test_each_box_strategy_over_rest_makes_the_slice_of_the_python_ranking(client, detected, strategy):
    # given
    run, other, _, run_boxes, other_boxes, _ = detected
    url = f"/api/v1/projects/{run.model_version.project_id}/prediction-runs/{run.pk}/selections"
    body = {"name": "check", "strategy": strategy, "k": 6, "score_floor": FLOOR}
    version = {"other_model_version_id": other.pk} if strategy == "box_disagreement" else {}
    # when
    answer = client.post(url, {**body, **version}, format="json")
    # then
    assert answer.status_code == 201, answer.content
    assert answer.json()["member_count"] == 6
    with tenant_scope(TENANT_A):  # the request left the connection in the public schema
        members = set(SliceMember.objects.filter(slice_id=answer.json()["id"]).values_list("datarow_id", flat=True))
    assert members == set(_python_ranking(strategy, run_boxes, other_boxes)[:6])


def test_bad_box_selections_over_rest_are_400s_naming_the_field(client, world, detected):
    # given a version of another project, and the bodies that are wrong in one field each

    run, other = detected[0], detected[1]
    foreign = model_version_make(project=project_make())
    url = f"/api/v1/projects/{world.project.pk}/prediction-runs/{run.pk}/selections"
    good = {"name": "n", "strategy": "box_disagreement", "k": 3, "other_model_version_id": other.pk}
    cases = {
        "other_model_version_id": {**good, "other_model_version_id": foreign.pk},
        "k": {**good, "k": 0},
        "score_floor": {**good, "score_floor": -0.1},
        "strategy": {**good, "strategy": "box_margin"},
    }
    for field, body in cases.items():
        # when
        answer = client.post(url, body, format="json")
        # then
        assert answer.status_code == 400, (field, answer.content)
        assert field in answer.json()["extra"]["fields"], (field, answer.json())
