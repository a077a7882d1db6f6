"""A model version's predictions scored against ground truth: classification (SQL counts) and detection (COCO mAP).

Reads only; they run on the reader where the router sends them.
"""

import contextlib
import io
from dataclasses import dataclass

from django.db import connection

from datasets.models import ModelVersion
from mlops import tables
from predictions.ground_truth import classification_truth_sql


@dataclass(frozen=True)
class Scope:
    """Which datarows count: all that the version predicted, or only the members of a slice (and some splits)."""

    slice_id: int | None = None
    splits: tuple[int, ...] | None = None

    def condition(self, column: str) -> tuple[str, list]:
        """An SQL condition on `column` (a datarow id) and its positional parameters."""
        if self.slice_id is None:
            return "TRUE", []
        split_filter = " AND sm.split = ANY(%s)" if self.splits else ""
        return (
            f"EXISTS (SELECT 1 FROM {tables.SLICE_MEMBER} sm WHERE sm.slice_id = %s "
            f"AND sm.datarow_id = {column}{split_filter})",
            [self.slice_id, *([list(self.splits)] if self.splits else [])],
        )


def top1_sql(scope_condition: str) -> str:
    """SELECT datarow_id, ontology_class_id, score: a version's (the first parameter) best classification per
    datarow in scope (ties: the lower prediction id)."""
    return f"""
        SELECT DISTINCT ON (p.datarow_id) p.datarow_id, p.ontology_class_id, p.score
        FROM {tables.PREDICTION} p
        WHERE p.model_version_id = %s AND p.kind = 'classification' AND ({scope_condition})
        ORDER BY p.datarow_id, p.score DESC, p.id"""


def confusion_counts(*, model_version: ModelVersion, scope: Scope = Scope()) -> dict[tuple[int, int], int]:
    """(true class id, predicted class id) -> datarows, over the datarows with both a label and a prediction."""
    condition, params = scope.condition("p.datarow_id")
    truth = classification_truth_sql("l.datarow_id IN (SELECT datarow_id FROM top1)")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH top1 AS MATERIALIZED ({top1_sql(condition)})
            SELECT t.ontology_class_id, top1.ontology_class_id, count(*)
            FROM top1 JOIN ({truth}) t ON t.datarow_id = top1.datarow_id
            GROUP BY 1, 2""",
            [model_version.pk, *params],
        )
        return {(true_class, predicted): count for true_class, predicted, count in cursor.fetchall()}


def _class_names(class_ids) -> dict[int, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, name FROM {tables.ONTOLOGY_CLASS} WHERE id = ANY(%s)", [list(class_ids)])
        return dict(cursor.fetchall())


def classification_metrics(*, model_version: ModelVersion, scope: Scope = Scope()) -> dict:
    """Accuracy, per-class precision / recall / F1 / support and the confusion matrix, from the SQL counts."""
    counts = confusion_counts(model_version=model_version, scope=scope)
    names = _class_names({class_id for pair in counts for class_id in pair})
    classes = sorted(names, key=names.get)
    total = sum(counts.values())
    correct = sum(count for (true_class, predicted), count in counts.items() if true_class == predicted)
    per_class = {}
    for class_id in classes:
        true_positives = counts.get((class_id, class_id), 0)
        predicted = sum(count for (_, p), count in counts.items() if p == class_id)
        support = sum(count for (t, _), count in counts.items() if t == class_id)
        precision = true_positives / predicted if predicted else 0.0
        recall = true_positives / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[names[class_id]] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "model_version_id": model_version.pk,
        "datarows": total,
        "accuracy": correct / total if total else None,
        "per_class": per_class,
        "confusion_matrix": {
            "classes": [names[c] for c in classes],
            "counts": [[counts.get((t, p), 0) for p in classes] for t in classes],
        },
    }


def _box_rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def detection_map(*, model_version: ModelVersion, scope: Scope = Scope()) -> dict:
    """COCO mAP of the version's box predictions against the box labels, with pycocotools' own evaluation.

    The images are the datarows (in scope) with a box label or a box prediction of the version; a datarow
    with predictions but no labels counts its predictions as false positives, as COCO does."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    condition, params = scope.condition("d.datarow_id")
    truths = _box_rows(
        f"""
        SELECT d.datarow_id, d.ontology_class_id, d.x, d.y, d.w, d.h, coalesce(d.area, d.w * d.h)
        FROM {tables.LABEL} d JOIN {tables.ONTOLOGY_CLASS} o ON o.id = d.ontology_class_id
        WHERE o.project_id = %s AND d.kind = 'box' AND ({condition}) ORDER BY d.id""",
        [model_version.project_id, *params],
    )
    detections = _box_rows(
        f"""
        SELECT d.datarow_id, d.ontology_class_id, d.x, d.y, d.w, d.h, d.score
        FROM {tables.PREDICTION} d
        WHERE d.model_version_id = %s AND d.kind = 'box' AND ({condition}) ORDER BY d.id""",
        [model_version.pk, *params],
    )
    if not truths:
        return {
            "model_version_id": model_version.pk,
            "images": 0,
            "map": None,
            "map_50": None,
            "map_75": None,
            "per_class": {},
        }
    image_ids = sorted({row[0] for row in truths} | {row[0] for row in detections})
    class_ids = sorted({row[1] for row in truths} | {row[1] for row in detections})
    names = _class_names(class_ids)
    images = [{"id": image_id} for image_id in image_ids]
    categories = [{"id": class_id, "name": names[class_id]} for class_id in class_ids]
    ground_truth, results = COCO(), COCO()
    ground_truth.dataset = {
        "images": images,
        "categories": categories,
        "annotations": [
            {
                "id": index,
                "image_id": image_id,
                "category_id": class_id,
                "bbox": [x, y, w, h],
                "area": area,
                "iscrowd": 0,
            }
            for index, (image_id, class_id, x, y, w, h, area) in enumerate(truths, 1)
        ],
    }
    # What COCO.loadRes makes of a results list (area w*h, ids from 1), built directly so none is also fine.
    results.dataset = {
        "images": images,
        "categories": categories,
        "annotations": [
            {
                "id": index,
                "image_id": image_id,
                "category_id": class_id,
                "bbox": [x, y, w, h],
                "area": w * h,
                "score": score,
                "iscrowd": 0,
            }
            for index, (image_id, class_id, x, y, w, h, score) in enumerate(detections, 1)
        ],
    }
    # pycocotools reports on stdout; the numbers are returned instead.
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        results.createIndex()
        evaluation = COCOeval(ground_truth, results, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision[iou, recall, class, area=all, max detections=100]; -1 marks a class with no ground truth.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for index, class_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, index]
        values = values[values > -1]
        per_class[names[class_id]] = float(values.mean()) if values.size else None
    return {
        "model_version_id": model_version.pk,
        "images": len(image_ids),
        "map": float(evaluation.stats[0]),
        "map_50": float(evaluation.stats[1]),
        "map_75": float(evaluation.stats[2]),
        "per_class": per_class,
    }


def classification_comparison(*, baseline: ModelVersion, candidate: ModelVersion, scope: Scope = Scope()) -> dict:
    """Both versions' metrics and, per class, the candidate's minus the baseline's (a class one of them never
    met counts as 0 there)."""
    before = classification_metrics(model_version=baseline, scope=scope)
    after = classification_metrics(model_version=candidate, scope=scope)
    empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    deltas = {
        name: {
            key: after["per_class"].get(name, empty)[key] - before["per_class"].get(name, empty)[key]
            for key in ("precision", "recall", "f1")
        }
        for name in sorted(before["per_class"].keys() | after["per_class"].keys())
    }
    accuracy_delta = (
        after["accuracy"] - before["accuracy"]
        if after["accuracy"] is not None and before["accuracy"] is not None
        else None
    )
    return {"baseline": before, "candidate": after, "accuracy_delta": accuracy_delta, "per_class_deltas": deltas}


def top1_disagreement_sql(
    *, baseline: ModelVersion, candidate: ModelVersion, scope: Scope = Scope()
) -> tuple[str, list]:
    """SELECT datarow_id of the datarows (in scope) that both versions classified, with different top-1 classes."""
    condition, params = scope.condition("p.datarow_id")
    return (
        f"""
        SELECT a.datarow_id FROM ({top1_sql(condition)}) a JOIN ({top1_sql(condition)}) b
            ON b.datarow_id = a.datarow_id AND b.ontology_class_id <> a.ontology_class_id""",
        [baseline.pk, *params, candidate.pk, *params],
    )
