"""COCO box evaluation in numpy: pycocotools' COCOeval ("bbox") numbers, and each object's outcome at one IoU.

pycocotools matches in Python loops, per image, class, area range and IoU threshold (minutes at 100k images);
here every (image, class) group is matched at once, one detection rank at a time, over all ten thresholds and four
area ranges together. The rules are pycocotools' own, so its numbers come out equal (tests/evaluations):

- a group is one image's boxes of one class; its detections, ordered by score (ties: the lower id first), are
  kept up to the maximum per group, and each takes in turn the free ground truth with the highest IoU of at
  least the threshold (ties: the later ground truth), a regular one before an ignored one;
- a crowd ground truth is always ignored, stays free after a match (several detections may match it) and is
  scored as the detection's area covered (intersection over the detection's area); a ground truth whose area is
  outside the area range is ignored there; a detection matched to an ignored ground truth is ignored (neither TP
  nor FP), and so is an unmatched one whose area (w * h) is outside the range;
- the precision at each of the 101 recall points is the best precision at that recall or more, over all
  detections of the class ordered by score (ties: image, then id), kept up to 1, 10 or 100 per group.

Framework-free (numpy only): the job feeds it chunks of whole images read from SQL (evaluations.services).
"""

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGES = (("all", 0.0, 1e5**2), ("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, 1e5**2))
# pycocotools' `min(t, 1 - 1e-10)`: a threshold of 1 matches boxes whose IoU rounds just below 1.
_THRESHOLD_CAP = 1 - 1e-10
_TP, _FP, _IGNORED = 1, 0, 2
TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE = "tp", "fp", "fn"


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth boxes (one entry per box, in any order); `id`s unique and positive."""

    image: np.ndarray  # int64
    class_id: np.ndarray  # int64
    box: np.ndarray  # float64 (n, 4): x, y, w, h
    area: np.ndarray  # float64: the area ranges use it (COCO's `area`, e.g. a polygon's), IoU the box
    crowd: np.ndarray  # bool
    id: np.ndarray  # int64


@dataclass(frozen=True)
class Detections:
    image: np.ndarray  # int64
    class_id: np.ndarray  # int64
    box: np.ndarray  # float64 (n, 4)
    score: np.ndarray  # float64
    id: np.ndarray  # int64


@dataclass(frozen=True)
class Matches:
    """Each object's outcome at the run's IoU threshold, area range "all", at most `max_detections` per group.

    Ground truths: the regular ones (not crowd); `other_id` is the matched detection (TP) or the detection of any
    class with the highest IoU over 0 (FN; -1 when none overlaps), `other_class` its class, `iou` that IoU (NaN
    when none). Detections: those kept and not ignored (a detection matched to a crowd is left out); `other_id` is
    the matched ground truth (TP) or the regular ground truth of any class with the highest IoU over 0 (FP; -1 when
    none). IoU ties: the lower id."""

    label_image: np.ndarray
    label_id: np.ndarray
    label_class: np.ndarray
    label_outcome: np.ndarray  # "tp" / "fn"
    label_other_id: np.ndarray
    label_other_class: np.ndarray
    label_iou: np.ndarray
    prediction_image: np.ndarray
    prediction_id: np.ndarray
    prediction_class: np.ndarray
    prediction_outcome: np.ndarray  # "tp" / "fp"
    prediction_other_id: np.ndarray
    prediction_iou: np.ndarray
    prediction_score: np.ndarray


def box_iou(detections: np.ndarray, truths: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired boxes (rows of x, y, w, h), computed as pycocotools' bbIou does (so equal to the last bit);
    a crowd truth's is the intersection over the detection's area."""
    dx, dy, dw, dh = detections.T
    gx, gy, gw, gh = truths.T
    width = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    height = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (width > 0) & (height > 0)
    intersection = np.where(overlap, width * height, 0.0)
    detection_area, truth_area = dw * dh, gw * gh
    union = np.where(crowd, detection_area, detection_area + truth_area - intersection)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, intersection / np.where(overlap, union, 1.0), 0.0)


def _pairs(left_key: np.ndarray, right_key_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (left index, right index) with equal keys; `right_key_sorted` ascending. Left-major order."""
    start = np.searchsorted(right_key_sorted, left_key, side="left")
    counts = np.searchsorted(right_key_sorted, left_key, side="right") - start
    left = np.repeat(np.arange(len(left_key)), counts)
    offsets = np.arange(len(left)) - np.repeat(np.cumsum(counts) - counts, counts)
    return left, start[left] + offsets


def _best_other(
    group: np.ndarray, other: np.ndarray, iou: np.ndarray, other_id: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each of `size` objects, the paired other with the highest IoU over 0 (ties: the lower id): its index
    (-1 when none) and IoU (NaN)."""
    best, best_iou = np.full(size, -1), np.full(size, np.nan)
    keep = iou > 0
    group, other, iou = group[keep], other[keep], iou[keep]
    order = np.lexsort((other_id[other], -iou, group))
    group, other, iou = group[order], other[order], iou[order]
    first = np.r_[True, group[1:] != group[:-1]] if len(group) else np.zeros(0, bool)
    best[group[first]], best_iou[group[first]] = other[first], iou[first]
    return best, best_iou


class CocoEvaluation:
    """Feed it chunks of whole images (`add`), then read `summary()`. Memory: about 80 bytes per detection kept
    (at most 100, or max_detections, per image and class), beside one chunk's working set."""

    def __init__(self, *, iou_threshold: float = 0.5, max_detections: int = 100):
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        # The ten COCO thresholds, then the run's (for the stored matches).
        self._thresholds = np.minimum(np.r_[IOU_THRESHOLDS, iou_threshold], _THRESHOLD_CAP)
        self._keep = max(MAX_DETECTIONS[-1], max_detections)
        self._area_low = np.array([low for _, low, _ in AREA_RANGES])
        self._area_high = np.array([high for _, _, high in AREA_RANGES])
        self._kept: list[tuple[np.ndarray, ...]] = []
        self._regular_truths: dict[int, np.ndarray] = {}  # class -> regular ground truths per area range

    def add(self, truths: GroundTruth, detections: Detections) -> Matches:
        """Match one chunk (every box of its images, of every class) and return its objects' outcomes."""
        t_count, a_count = len(self._thresholds), len(AREA_RANGES)
        # Groups: (image, class), numbered densely within the chunk.
        images = np.unique(np.r_[truths.image, detections.image])
        classes = np.unique(np.r_[truths.class_id, detections.class_id])
        truth_group = np.searchsorted(images, truths.image) * len(classes) + np.searchsorted(classes, truths.class_id)
        detection_group = np.searchsorted(images, detections.image) * len(classes) + np.searchsorted(
            classes, detections.class_id
        )
        # Ground truths by group, then id; detections by group, then score (descending), then id.
        truth_order = np.lexsort((truths.id, truth_group))
        truth_group = truth_group[truth_order]
        truth_box, truth_area = truths.box[truth_order], truths.area[truth_order]
        truth_crowd, truth_id = truths.crowd[truth_order], truths.id[truth_order]
        truth_class, truth_image = truths.class_id[truth_order], truths.image[truth_order]
        truth_ignored = (
            truth_crowd[None, :]
            | (truth_area[None, :] < self._area_low[:, None])
            | (truth_area[None, :] > self._area_high[:, None])
        )  # (area range, truth)

        detection_order = np.lexsort((detections.id, -detections.score, detection_group))
        detection_group = detection_group[detection_order]
        rank = np.arange(len(detection_group)) - np.searchsorted(detection_group, detection_group, side="left")
        detection_order, detection_group, rank = (
            detection_order[rank < self._keep],
            detection_group[rank < self._keep],
            rank[rank < self._keep],
        )
        detection_box = detections.box[detection_order]
        detection_score, detection_id = detections.score[detection_order], detections.id[detection_order]
        detection_class, detection_image = detections.class_id[detection_order], detections.image[detection_order]
        detection_area = detection_box[:, 2] * detection_box[:, 3]
        detection_count = len(detection_order)

        # Same-group pairs, by detection rank (then detection): each rank's detections are matched together.
        pair_detection, pair_truth = _pairs(detection_group, truth_group)
        pair_iou = box_iou(detection_box[pair_detection], truth_box[pair_truth], truth_crowd[pair_truth])
        # A pair under the lowest threshold never matches (most pairs do not even overlap): only the rest are walked.
        close = pair_iou >= self._thresholds.min()
        pair_detection, pair_truth, pair_iou = pair_detection[close], pair_truth[close], pair_iou[close]
        by_rank = np.argsort(rank[pair_detection], kind="stable")
        pair_detection, pair_truth, pair_iou = pair_detection[by_rank], pair_truth[by_rank], pair_iou[by_rank]
        rank_bounds = np.searchsorted(rank[pair_detection], np.arange(self._keep + 1), side="left")

        taken = np.zeros((t_count, a_count, len(truth_id)), bool)
        # Per threshold, area range and detection: FP until matched, or ignored when outside the range unmatched.
        outside = (detection_area[None, :] < self._area_low[:, None]) | (
            detection_area[None, :] > self._area_high[:, None]
        )
        status = np.broadcast_to(np.where(outside, _IGNORED, _FP).astype(np.uint8), (t_count, a_count, detection_count))
        status = status.copy()
        match = np.full(detection_count, -1)  # at the run's threshold, area "all"
        match_iou = np.full(detection_count, np.nan)
        for step in range(self._keep):
            low, high = rank_bounds[step], rank_bounds[step + 1]
            if low == high:
                if low == len(pair_detection):
                    break
                continue
            detection, truth, iou = pair_detection[low:high], pair_truth[low:high], pair_iou[low:high]
            new_detection = np.r_[True, detection[1:] != detection[:-1]]
            starts, segment = np.flatnonzero(new_detection), np.cumsum(new_detection) - 1
            free = ~taken[:, :, truth] | truth_crowd[truth]
            candidate = free & (iou >= self._thresholds[:, None, None])
            regular = ~truth_ignored[:, truth][None]
            any_regular = np.logical_or.reduceat(candidate & regular, starts, axis=2)
            # A regular ground truth first; an ignored one only when no regular one is close enough.
            eligible = candidate & (regular == any_regular[:, :, segment])
            best = np.maximum.reduceat(np.where(eligible, iou, -1.0), starts, axis=2)
            chosen = eligible & (iou == best[:, :, segment])
            choice = np.maximum.reduceat(np.where(chosen, truth, -1), starts, axis=2)
            matched = choice >= 0
            these = detection[starts]
            status[:, :, these] = np.where(matched, np.where(any_regular, _TP, _IGNORED), status[:, :, these])
            t_index, a_index, s_index = np.nonzero(matched)
            taken[t_index, a_index, choice[t_index, a_index, s_index]] = True
            match[these] = choice[-1, 0]
            match_iou[these] = np.where(matched[-1, 0], best[-1, 0], np.nan)

        # What the summary needs: COCO's ten thresholds, detections up to 100 per group.
        in_metrics = rank < MAX_DETECTIONS[-1]
        self._kept.append(
            (
                detection_class[in_metrics],
                detection_score[in_metrics],
                detection_image[in_metrics],
                detection_id[in_metrics],
                rank[in_metrics].astype(np.int32),
                np.ascontiguousarray(status[:-1, :, in_metrics].transpose(2, 0, 1)),
            )
        )
        for class_id in np.unique(truth_class):
            counts = (~truth_ignored[:, truth_class == class_id]).sum(axis=1)
            self._regular_truths[int(class_id)] = self._regular_truths.get(int(class_id), 0) + counts
        return self._matches(
            truth_image, truth_id, truth_class, truth_box, truth_ignored[0],
            detection_image, detection_id, detection_class, detection_box, detection_score,
            stored=(rank < self.max_detections) & (status[-1, 0] != _IGNORED), match=match, match_iou=match_iou,
        )  # fmt: skip

    def _matches(
        self, truth_image, truth_id, truth_class, truth_box, truth_ignored,
        detection_image, detection_id, detection_class, detection_box, detection_score, *, stored, match, match_iou,
    ) -> Matches:  # fmt: skip
        regular = np.flatnonzero(~truth_ignored)
        kept = np.flatnonzero(stored)
        # The run's TPs, from the ground truth's side.
        truth_match = np.full(len(truth_id), -1)
        tp = kept[match[kept] >= 0]
        truth_match[match[tp]] = tp
        # Best overlaps of any class, within each image.
        image_order = np.argsort(detection_image[kept], kind="stable")
        pair_truth, pair_kept = _pairs(truth_image[regular], detection_image[kept][image_order])
        pair_truth, pair_detection = regular[pair_truth], kept[image_order][pair_kept]
        pair_iou = box_iou(detection_box[pair_detection], truth_box[pair_truth], np.zeros(len(pair_truth), bool))
        best_detection, best_detection_iou = _best_other(
            pair_truth, pair_detection, pair_iou, detection_id, len(truth_id)
        )
        best_truth, best_truth_iou = _best_other(pair_detection, pair_truth, pair_iou, truth_id, len(detection_id))

        truth_tp = truth_match[regular] >= 0
        other = np.where(truth_tp, truth_match[regular], best_detection[regular])
        label_iou = np.where(truth_tp, match_iou[np.maximum(truth_match[regular], 0)], best_detection_iou[regular])
        detection_tp = match[kept] >= 0
        other_truth = np.where(detection_tp, match[kept], best_truth[kept])
        prediction_iou = np.where(detection_tp, match_iou[kept], best_truth_iou[kept])
        return Matches(
            label_image=truth_image[regular],
            label_id=truth_id[regular],
            label_class=truth_class[regular],
            label_outcome=np.where(truth_tp, TRUE_POSITIVE, FALSE_NEGATIVE),
            label_other_id=np.where(other >= 0, detection_id[np.maximum(other, 0)], -1),
            label_other_class=np.where(other >= 0, detection_class[np.maximum(other, 0)], -1),
            label_iou=label_iou,
            prediction_image=detection_image[kept],
            prediction_id=detection_id[kept],
            prediction_class=detection_class[kept],
            prediction_outcome=np.where(detection_tp, TRUE_POSITIVE, FALSE_POSITIVE),
            prediction_other_id=np.where(other_truth >= 0, truth_id[np.maximum(other_truth, 0)], -1),
            prediction_iou=prediction_iou,
            prediction_score=detection_score[kept],
        )

    def accumulate(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """pycocotools' eval["precision"] (threshold, recall point, class, area range, max detections) and
        eval["recall"] (threshold, class, area range, max detections), -1 where a class has no regular ground
        truth; and the classes, in their order there (ascending ids)."""
        if self._kept:
            class_id, score, image, ids, rank, status = (
                np.concatenate(parts) for parts in zip(*self._kept, strict=True)
            )
        else:
            class_id, score, image, ids, rank = (np.zeros(0, dtype) for dtype in (int, float, int, int, np.int32))
            status = np.zeros((0, len(IOU_THRESHOLDS), len(AREA_RANGES)), np.uint8)
        classes = sorted(set(np.unique(class_id).tolist()) | set(self._regular_truths))
        t_count, r_count, a_count, m_count = len(IOU_THRESHOLDS), len(RECALL_POINTS), len(AREA_RANGES), 3
        precision = -np.ones((t_count, r_count, len(classes), a_count, m_count))
        recall = -np.ones((t_count, len(classes), a_count, m_count))
        # pycocotools' order: score (descending), then image, then id (its stable sorts of images in id order).
        order = np.lexsort((ids, image, -score, class_id))
        class_id, rank, status = class_id[order], rank[order], status[order]
        bounds = np.searchsorted(class_id, [*classes, np.iinfo(np.int64).max])
        for k, class_key in enumerate(classes):
            regular = self._regular_truths.get(class_key, np.zeros(a_count, int))
            of_class = slice(bounds[k], bounds[k + 1])
            for m, most in enumerate(MAX_DETECTIONS):
                # (threshold, area range, detection), contiguous along the detections the sums run over.
                kept = np.ascontiguousarray(status[of_class][rank[of_class] < most].transpose(1, 2, 0))
                tp = np.cumsum(kept == _TP, axis=2, dtype=np.int32).astype(float)
                fp = np.cumsum(kept == _FP, axis=2, dtype=np.int32)
                count = kept.shape[2]
                with np.errstate(divide="ignore", invalid="ignore"):
                    rc = tp / regular[None, :, None]
                pr = tp / (fp + tp + np.spacing(1))
                # Precision made non-increasing from the end: the best precision at this recall or more.
                pr = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]
                for a in range(a_count):
                    if regular[a] == 0:
                        continue
                    if not count:
                        recall[:, k, a, m], precision[:, :, k, a, m] = 0.0, 0.0
                        continue
                    for t in range(t_count):
                        recall[t, k, a, m] = rc[t, a, -1]
                        at = np.searchsorted(rc[t, a], RECALL_POINTS, side="left")
                        precision[t, :, k, a, m] = np.where(at < count, pr[t, a, np.minimum(at, count - 1)], 0.0)
        return precision, recall, classes

    def summary(self, class_names: dict[int, str]) -> dict:
        """The run's metrics (EvaluationRun.metrics): pycocotools' twelve summary numbers (None where it prints
        -1) and, per class, AP, AP50, AP75 and the precision at each of the 101 recall points (IoU 0.5, area all,
        100 detections)."""
        precision, recall, classes = self.accumulate()
        names = {name: index for index, (name, _, _) in enumerate(AREA_RANGES)}

        def mean(values: np.ndarray) -> float | None:
            values = values[values > -1]
            return float(np.mean(values)) if values.size else None

        def ap(threshold: int | None = None, area: str = "all", classes=slice(None)) -> float | None:
            values = precision[:, :, classes, names[area], 2]
            return mean(values if threshold is None else values[threshold])

        def ar(most: int, area: str = "all") -> float | None:
            return mean(recall[:, :, names[area], MAX_DETECTIONS.index(most)])

        fifty, seventy_five = 0, int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.75))[0])
        per_class = {}
        for k, class_id in enumerate(classes):
            curve = precision[fifty, :, k, 0, 2]
            per_class[class_names.get(class_id, str(class_id))] = {
                "ap": ap(classes=k),
                "ap50": ap(fifty, classes=k),
                "ap75": ap(seventy_five, classes=k),
                "ground_truth": int(self._regular_truths.get(class_id, np.zeros(1, int))[0]),
                "recall": RECALL_POINTS.tolist(),
                "precision": curve.tolist() if curve[0] > -1 else None,
            }
        return {
            "map": ap(),
            "ap50": ap(fifty),
            "ap75": ap(seventy_five),
            "ap_small": ap(area="small"),
            "ap_medium": ap(area="medium"),
            "ap_large": ap(area="large"),
            "ar1": ar(1),
            "ar10": ar(10),
            "ar100": ar(100),
            "ar_small": ar(100, "small"),
            "ar_medium": ar(100, "medium"),
            "ar_large": ar(100, "large"),
            "per_class": per_class,
        }
