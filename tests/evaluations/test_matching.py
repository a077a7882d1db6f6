"""The numpy COCO evaluation against pycocotools' COCOeval on the same random boxes: every precision and recall
value, the twelve summary numbers, and each object's match."""

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from evaluations.matching import CocoEvaluation, Detections, GroundTruth, box_iou

STATS = ["map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "ar_small", "ar_medium"]
STATS.append("ar_large")


def random_world(seed: int, *, images: int = 40, classes: int = 4) -> tuple[GroundTruth, Detections]:
    """Boxes from 2 to 200 pixels (every area range), a tenth of them crowds, areas that are not always w * h;
    detections near the truths (some of another class) and anywhere, with scores rounded so that ties happen;
    some images without truths, some without detections, some empty."""
    rng = np.random.default_rng(seed)
    truths, detections = [], []
    for image in range(1, images + 1):
        kind = rng.random()
        boxes = []
        if kind > 0.1:
            for _ in range(int(rng.integers(0, 8))):
                w, h = rng.uniform(2, 200, 2)
                box = (*rng.uniform(0, 400, 2), w, h)
                area = w * h if rng.random() < 0.7 else w * h * rng.uniform(0.3, 1)
                boxes.append(box)
                truths.append((image, int(rng.integers(1, classes + 1)), box, area, bool(rng.random() < 0.1)))
        if kind > 0.2 or kind < 0.05:
            for box in boxes:
                for _ in range(int(rng.integers(0, 3))):
                    jitter = rng.normal(0, max(box[2], box[3]) * 0.1, 4)
                    near = (
                        box[0] + jitter[0],
                        box[1] + jitter[1],
                        max(box[2] + jitter[2], 1),
                        max(box[3] + jitter[3], 1),
                    )
                    detections.append((image, int(rng.integers(1, classes + 1)), near, round(float(rng.random()), 1)))
            for _ in range(int(rng.integers(0, 6))):
                w, h = rng.uniform(2, 200, 2)
                box = (*rng.uniform(0, 400, 2), w, h)
                detections.append((image, int(rng.integers(1, classes + 1)), box, round(float(rng.random()), 1)))
    # A few exact duplicates: equal IoUs and equal scores.
    detections += detections[: len(detections) // 10]
    return (
        GroundTruth(
            image=np.array([t[0] for t in truths], int),
            class_id=np.array([t[1] for t in truths], int),
            box=np.array([t[2] for t in truths], float).reshape(-1, 4),
            area=np.array([t[3] for t in truths], float),
            crowd=np.array([t[4] for t in truths], bool),
            id=np.arange(1, len(truths) + 1),
        ),
        Detections(
            image=np.array([d[0] for d in detections], int),
            class_id=np.array([d[1] for d in detections], int),
            box=np.array([d[2] for d in detections], float).reshape(-1, 4),
            score=np.array([d[3] for d in detections], float),
            id=np.arange(1, len(detections) + 1),
        ),
    )


def cocoeval(truths: GroundTruth, detections: Detections, *, iou_thresholds=None, max_detections=None) -> COCOeval:
    images = sorted(set(truths.image.tolist()) | set(detections.image.tolist()))
    classes = sorted(set(truths.class_id.tolist()) | set(detections.class_id.tolist()))
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": i} for i in images],
        "categories": [{"id": c} for c in classes],
        "annotations": [
            {"id": int(n), "image_id": int(i), "category_id": int(c), "bbox": b.tolist(), "area": a, "iscrowd": int(k)}
            for i, c, b, a, k, n in zip(
                truths.image, truths.class_id, truths.box, truths.area, truths.crowd, truths.id, strict=True
            )
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        results = (
            ground_truth.loadRes(
                [
                    {"image_id": int(i), "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
                    for i, c, b, s in zip(
                        detections.image, detections.class_id, detections.box, detections.score, strict=True
                    )
                ]
            )
            if len(detections.id)
            else COCO()
        )
        evaluation = COCOeval(ground_truth, results, "bbox")
        if iou_thresholds is not None:
            evaluation.params.iouThrs = np.array(iou_thresholds)
        if max_detections is not None:
            evaluation.params.maxDets = [max_detections]
        evaluation.evaluate()
        if iou_thresholds is None and max_detections is None:
            evaluation.accumulate()
            evaluation.summarize()
    return evaluation


def evaluate_in_chunks(truths, detections, *, chunks: int = 3, **options) -> tuple[CocoEvaluation, list]:
    evaluation = CocoEvaluation(**options)
    images = np.unique(np.r_[truths.image, detections.image])
    matches = []
    for part in np.array_split(images, chunks):
        t, d = np.isin(truths.image, part), np.isin(detections.image, part)
        matches.append(
            evaluation.add(
                GroundTruth(
                    truths.image[t], truths.class_id[t], truths.box[t], truths.area[t], truths.crowd[t], truths.id[t]
                ),
                Detections(
                    detections.image[d],
                    detections.class_id[d],
                    detections.box[d],
                    detections.score[d],
                    detections.id[d],
                ),
            )
        )
    return evaluation, matches


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunks=st.integers(1, 4))
def test_precision_recall_and_summary_equal_pycocotools(seed, chunks):
    # given
    truths, detections = random_world(seed)
    reference = cocoeval(truths, detections)
    # when
    evaluation, _ = evaluate_in_chunks(truths, detections, chunks=chunks)
    precision, recall, classes = evaluation.accumulate()
    summary = evaluation.summary({c: f"class {c}" for c in classes})
    # then
    assert classes == reference.params.catIds
    np.testing.assert_allclose(precision, reference.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall, reference.eval["recall"], rtol=0, atol=1e-12)
    for name, value in zip(STATS, reference.stats, strict=True):
        assert (summary[name] if summary[name] is not None else -1) == pytest.approx(value, abs=1e-12), name
    for k, class_id in enumerate(classes):
        values = reference.eval["precision"][:, :, k, 0, -1]
        expected = values[values > -1].mean() if (values > -1).any() else None
        assert summary["per_class"][f"class {class_id}"]["ap"] == pytest.approx(expected, abs=1e-12)


def reference_matches(reference: COCOeval) -> tuple[dict, dict]:
    """{label id: matched detection id or 0} for regular truths and {detection id: matched label id or 0} for
    detections not ignored, at the first threshold, area "all"."""
    labels, predictions = {}, {}
    for result in reference.evalImgs:
        if result is None or result["aRng"] != reference.params.areaRng[0]:
            continue
        for gt_id, match, ignored in zip(result["gtIds"], result["gtMatches"][0], result["gtIgnore"], strict=True):
            if not ignored:
                labels[gt_id] = int(match)
        for dt_id, match, ignored in zip(result["dtIds"], result["dtMatches"][0], result["dtIgnore"][0], strict=True):
            if not ignored:
                predictions[dt_id] = int(match)
    return labels, predictions


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    iou_threshold=st.sampled_from([0.5, 0.3, 0.75, 1.0, 0.05]),
    max_detections=st.sampled_from([100, 3, 1]),
)
def test_stored_matches_are_pycocotools_matches_at_the_runs_threshold(seed, iou_threshold, max_detections):
    # given
    truths, detections = random_world(seed)
    reference = cocoeval(truths, detections, iou_thresholds=[iou_threshold], max_detections=max_detections)
    expected_labels, expected_predictions = reference_matches(reference)
    # when
    _, chunks = evaluate_in_chunks(
        truths, detections, chunks=2, iou_threshold=iou_threshold, max_detections=max_detections
    )
    # then
    labels = {
        int(i): (int(other) if outcome == "tp" else 0)
        for chunk in chunks
        for i, outcome, other in zip(chunk.label_id, chunk.label_outcome, chunk.label_other_id, strict=True)
    }
    predictions = {
        int(i): (int(other) if outcome == "tp" else 0)
        for chunk in chunks
        for i, outcome, other in zip(
            chunk.prediction_id, chunk.prediction_outcome, chunk.prediction_other_id, strict=True
        )
    }
    assert labels == expected_labels
    assert predictions == expected_predictions


def test_misses_and_false_positives_carry_the_best_overlap_of_any_class():
    # given: a truck labelled, a bus predicted on it, and a far-away box
    truths = GroundTruth(
        image=np.array([1, 1]), class_id=np.array([7, 7]), box=np.array([[0, 0, 10, 10], [100, 100, 10, 10.0]]),
        area=np.array([100.0, 100.0]), crowd=np.array([False, False]), id=np.array([11, 12]),
    )  # fmt: skip
    detections = Detections(
        image=np.array([1, 1]), class_id=np.array([8, 7]), box=np.array([[0, 0, 10, 5], [300, 300, 5, 5.0]]),
        score=np.array([0.9, 0.8]), id=np.array([21, 22]),
    )  # fmt: skip
    # when
    matches = CocoEvaluation().add(truths, detections)
    # then
    assert matches.label_outcome.tolist() == ["fn", "fn"]
    assert matches.label_other_id.tolist() == [21, -1]
    assert matches.label_other_class.tolist() == [8, -1]
    assert matches.label_iou[0] == 0.5 and np.isnan(matches.label_iou[1])
    assert matches.prediction_outcome.tolist() == ["fp", "fp"]
    others = zip(matches.prediction_other_id.tolist(), matches.prediction_iou.tolist(), strict=True)
    by_id = dict(zip(matches.prediction_id.tolist(), others, strict=True))
    assert by_id[21] == (11, 0.5) and by_id[22][0] == -1


def test_a_detection_on_a_crowd_is_neither_stored_nor_counted_and_the_crowd_is_no_miss():
    # given: a crowd region, two detections inside it (IoU to a crowd: intersection over the detection's area)
    truths = GroundTruth(
        image=np.array([1]), class_id=np.array([1]), box=np.array([[0, 0, 100, 100.0]]), area=np.array([1e4]),
        crowd=np.array([True]), id=np.array([1]),
    )  # fmt: skip
    detections = Detections(
        image=np.array([1, 1]), class_id=np.array([1, 1]), box=np.array([[10, 10, 20, 20], [20, 20, 20, 20.0]]),
        score=np.array([0.9, 0.8]), id=np.array([1, 2]),
    )  # fmt: skip
    # when
    evaluation = CocoEvaluation()
    matches = evaluation.add(truths, detections)
    # then
    assert box_iou(detections.box, truths.box[[0, 0]], np.array([True, True])).tolist() == [1.0, 1.0]
    assert len(matches.label_id) == len(matches.prediction_id) == 0
    assert evaluation.summary({1: "person"})["map"] is None
