import random

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from predictions.metrics import Scope, classification_comparison, classification_metrics, detection_map
from predictions.services import model_versions_compare
from slices.models import SliceMember, Split

pytestmark = pytest.mark.django_db

CLASSES = ["bird", "cat", "dog", "fish"]


def _random_classifications(world, version, rows, rng):
    """Labels and top-3 predictions on most rows; returns {datarow id: (true class, predicted top-1)}."""
    pairs = {}
    for datarow_id in rows:
        truth, scores = (
            rng.choice(CLASSES),
            dict(zip(rng.sample(CLASSES, 3), sorted(rng.sample(range(1, 99), 3), reverse=True))),
        )
        labelled, predicted = rng.random() < 0.85, rng.random() < 0.9
        if labelled:
            if rng.random() < 0.1:  # relabelled: the later label is the truth
                world.label(datarow_id, rng.choice(CLASSES))
            world.label(datarow_id, truth)
        if predicted:
            world.predict(version, datarow_id, {name: score / 100 for name, score in scores.items()})
        if labelled and predicted:
            pairs[datarow_id] = (truth, next(iter(scores)))
    return pairs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_classification_metrics_match_sklearn(world, seed):
    # given
    rng = random.Random(seed)
    version = world.model_version()
    pairs = _random_classifications(world, version, world.rows(150), rng)
    truths, predictions = [t for t, _ in pairs.values()], [p for _, p in pairs.values()]
    labels = sorted(set(truths) | set(predictions))
    # when
    metrics = classification_metrics(model_version=version)
    # then
    precision, recall, f1, support = precision_recall_fscore_support(
        truths, predictions, labels=labels, zero_division=0
    )
    assert metrics["datarows"] == len(pairs)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truths, predictions))
    assert metrics["confusion_matrix"]["classes"] == labels
    assert metrics["confusion_matrix"]["counts"] == confusion_matrix(truths, predictions, labels=labels).tolist()
    for index, name in enumerate(labels):
        assert metrics["per_class"][name] == pytest.approx(
            {"precision": precision[index], "recall": recall[index], "f1": f1[index], "support": support[index]}
        )


def test_metrics_scoped_to_a_slice_split_count_only_its_members(world):
    # given
    rng = random.Random(7)
    version = world.model_version()
    rows = world.rows(80)
    pairs = _random_classifications(world, version, rows, rng)
    test_rows = set(rows[::3])
    held_out = world.ids_slice(
        "held-out", rows, splits={r: Split.TEST if r in test_rows else Split.TRAIN for r in rows}
    )
    scoped = {r: pair for r, pair in pairs.items() if r in test_rows}
    # when
    metrics = classification_metrics(model_version=version, scope=Scope(slice_id=held_out.pk, splits=(Split.TEST,)))
    # then
    assert metrics["datarows"] == len(scoped)
    assert metrics["accuracy"] == pytest.approx(
        accuracy_score([t for t, _ in scoped.values()], [p for _, p in scoped.values()])
    )


def test_metrics_without_ground_truth_are_empty_not_an_error(world):
    version = world.model_version()
    world.predict(version, world.rows(1)[0], {"cat": 0.9})
    metrics = classification_metrics(model_version=version)
    assert metrics["datarows"] == 0 and metrics["accuracy"] is None and metrics["per_class"] == {}


def test_comparing_two_versions_gives_per_class_deltas_and_a_slice_where_top1_disagree(world, principal):
    # given
    rng = random.Random(11)
    rows = world.rows(60)
    baseline, candidate = world.model_version(version="1"), world.model_version(version="2")
    pairs_a = _random_classifications(world, baseline, rows, rng)
    for datarow_id in rows:  # the candidate predicts every row, right on about two thirds of the labelled ones
        truth = pairs_a.get(datarow_id, (rng.choice(CLASSES),))[0]
        world.predict(candidate, datarow_id, {truth if rng.random() < 0.66 else rng.choice(CLASSES): 0.8})
    from datasets.models import Prediction

    def top1(version):
        best = {}
        for p in Prediction.objects.filter(model_version=version).order_by("datarow_id", "-score", "id"):
            best.setdefault(p.datarow_id, p.ontology_class_id)
        return best

    top_a, top_b = top1(baseline), top1(candidate)
    expected_disagreements = {r for r in top_a.keys() & top_b.keys() if top_a[r] != top_b[r]}
    # when
    comparison, disagreements = model_versions_compare(
        principal=principal, baseline=baseline, candidate=candidate, disagreement_slice_name="a-vs-b"
    )
    # then
    before, after = (classification_metrics(model_version=v) for v in (baseline, candidate))
    for name, delta in comparison["per_class_deltas"].items():
        for key in ("precision", "recall", "f1"):
            assert delta[key] == pytest.approx(
                after["per_class"].get(name, {key: 0})[key] - before["per_class"].get(name, {key: 0})[key]
            )
    assert comparison["accuracy_delta"] == pytest.approx(after["accuracy"] - before["accuracy"])
    assert comparison == classification_comparison(baseline=baseline, candidate=candidate)
    members = set(SliceMember.objects.filter(slice=disagreements).values_list("datarow_id", flat=True))
    assert expected_disagreements and members == expected_disagreements
    assert disagreements.member_count == len(expected_disagreements)


def _random_boxes(rng: np.random.Generator, count: int) -> list[tuple[float, float, float, float]]:
    return [
        (float(x), float(y), float(w), float(h))
        for x, y, w, h in zip(
            rng.uniform(0, 200, count),
            rng.uniform(0, 200, count),
            rng.uniform(10, 80, count),
            rng.uniform(10, 80, count),
        )
    ]


def test_detection_map_matches_a_direct_pycocotools_evaluation(world):
    # given: boxes per image, predictions that are jittered boxes, misses and false positives
    rng = np.random.default_rng(5)
    version = world.model_version(name="detector")
    names = ["car", "person", "sign"]
    truths, results = [], []
    for datarow_id in world.rows(25):
        for box in _random_boxes(rng, int(rng.integers(0, 4))):
            name = names[int(rng.integers(0, 3))]
            world.label(datarow_id, name, box=box)
            truths.append((datarow_id, name, box))
            if rng.random() < 0.8:
                jittered = tuple(v + float(rng.normal(0, 4)) for v in box[:2]) + box[2:]
                score = float(rng.uniform(0.3, 1))
                world.predict_box(version, datarow_id, name, jittered, score)
                results.append((datarow_id, name, jittered, score))
        for box in _random_boxes(rng, int(rng.integers(0, 2))):
            name, score = names[int(rng.integers(0, 3))], float(rng.uniform(0, 0.6))
            world.predict_box(version, datarow_id, name, box, score)
            results.append((datarow_id, name, box, score))
    # when
    measured = detection_map(model_version=version)
    # then: the same numbers from pycocotools on the Python data, results loaded the documented way
    category = {name: index for index, name in enumerate(names, 1)}
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": i} for i in sorted({t[0] for t in truths} | {r[0] for r in results})],
        "categories": [{"id": i, "name": n} for n, i in category.items()],
        "annotations": [
            {"id": n, "image_id": i, "category_id": category[c], "bbox": list(b), "area": b[2] * b[3], "iscrowd": 0}
            for n, (i, c, b) in enumerate(truths, 1)
        ],
    }
    ground_truth.createIndex()
    detections = ground_truth.loadRes(
        [{"image_id": i, "category_id": category[c], "bbox": list(b), "score": s} for i, c, b, s in results]
    )
    evaluation = COCOeval(ground_truth, detections, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert measured["images"] == len(ground_truth.dataset["images"])
    assert measured["map"] == pytest.approx(evaluation.stats[0], abs=1e-9)
    assert measured["map_50"] == pytest.approx(evaluation.stats[1], abs=1e-9)
    assert measured["map_75"] == pytest.approx(evaluation.stats[2], abs=1e-9)
    assert 0 < measured["map"] < 1
    for name, index in category.items():
        values = evaluation.eval["precision"][:, :, index - 1, 0, -1]
        assert measured["per_class"][name] == pytest.approx(values[values > -1].mean(), abs=1e-9)
