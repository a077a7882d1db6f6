import hashlib
import math
import random

import pytest

from mlops.exceptions import ApplicationError, Conflict
from predictions.active_selection import STRATEGIES, Selection
from predictions.services import selection_create
from slices.models import SliceMember

pytestmark = pytest.mark.django_db

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture
def scored(world):
    """A finished prediction run with random top-3 scores on 40 rows, labels on half of them, and an older
    version's predictions on the same rows (which no strategy may read)."""
    rng = random.Random(3)
    version = world.model_version()
    run = world.prediction_run(version)
    rows = world.rows(40)
    scores, labels = {}, {}
    for datarow_id in rows:
        weights = [rng.random() for _ in CLASSES]
        probabilities = {name: weight / sum(weights) for name, weight in zip(CLASSES, weights)}
        top = dict(sorted(probabilities.items(), key=lambda item: -item[1])[:3])
        world.predict(version, datarow_id, top, run=run)
        scores[datarow_id] = top
        if rng.random() < 0.5:
            labels[datarow_id] = rng.choice(CLASSES)
            world.label(datarow_id, labels[datarow_id])
    other_run = world.prediction_run(world.model_version(version="0"))
    for datarow_id in rows:
        world.predict(other_run.model_version, datarow_id, {"a": 0.01}, run=other_run)
    return run, rows, scores, labels


def _python_ranking(strategy: str, scores: dict, labels: dict, seed: int = 0) -> list[int]:
    def key(datarow_id):
        values = sorted(scores[datarow_id].values(), reverse=True)
        top1, top2 = values[0], values[1] if len(values) > 1 else 0.0
        if strategy == "least_confidence":
            return top1
        if strategy == "margin":
            return top1 - top2
        if strategy == "entropy":
            return sum(p * math.log(p) for p in values)  # negated entropy: ascending puts the highest first
        if strategy == "disagreement":
            return -top1
        return hashlib.md5(f"{seed}:{datarow_id}".encode()).hexdigest()

    candidates = [
        r
        for r in scores
        if strategy != "disagreement" or (r in labels and labels[r] != max(scores[r], key=scores[r].get))
    ]
    return sorted(candidates, key=lambda r: (key(r), r))


def _members(selected) -> set[int]:
    return set(SliceMember.objects.filter(slice=selected).values_list("datarow_id", flat=True))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_picks_the_k_rows_a_python_computation_ranks_first(world, principal, scored, strategy):
    # given
    run, _, scores, labels = scored
    expected = _python_ranking(strategy, scores, labels, seed=42)[:7]
    # when
    selected = selection_create(
        principal=principal,
        prediction_run=run,
        name=f"next-{strategy}",
        selection=Selection(strategy=strategy, k=7, seed=42),
    )
    # then
    assert len(expected) == 7
    assert _members(selected) == set(expected)
    assert selected.member_count == 7 and selected.kind == "ids"


def test_random_is_reproducible_for_a_seed_and_differs_between_seeds(world, principal, scored):
    run = scored[0]
    picks = [
        _members(
            selection_create(
                principal=principal,
                prediction_run=run,
                name=f"random-{n}",
                selection=Selection(strategy="random", k=10, seed=seed),
            )
        )
        for n, seed in enumerate([1, 1, 2])
    ]
    assert picks[0] == picks[1] != picks[2]


def test_pool_and_unlabeled_only_restrict_the_candidates(world, principal, scored):
    # given
    run, rows, scores, labels = scored
    pool_rows = rows[:25]
    pool = world.ids_slice("pool", pool_rows)
    allowed = {r: scores[r] for r in pool_rows if r not in labels}
    # when
    selected = selection_create(
        principal=principal,
        prediction_run=run,
        name="next",
        pool_slice=pool,
        selection=Selection(strategy="least_confidence", k=5, pool_slice_id=pool.pk, unlabeled_only=True),
    )
    # then
    assert _members(selected) == set(_python_ranking("least_confidence", allowed, {})[:5])


def test_k_larger_than_the_candidates_takes_them_all(world, principal, scored):
    run, _, scores, labels = scored
    selected = selection_create(
        principal=principal, prediction_run=run, name="all-wrong", selection=Selection(strategy="disagreement", k=1000)
    )
    assert _members(selected) == set(_python_ranking("disagreement", scores, labels))


def test_a_run_that_has_not_succeeded_cannot_be_selected_from(world, principal):
    run = world.prediction_run(world.model_version(), status="running")
    with pytest.raises(Conflict, match="has not succeeded"):
        selection_create(principal=principal, prediction_run=run, name="x", selection=Selection(strategy="margin", k=3))


def test_disagreement_with_unlabeled_only_is_refused(world, principal, scored):
    with pytest.raises(ApplicationError) as refused:
        selection_create(
            principal=principal,
            prediction_run=scored[0],
            name="x",
            selection=Selection(strategy="disagreement", k=3, unlabeled_only=True),
        )
    assert "unlabeled_only" in refused.value.extra["fields"]
