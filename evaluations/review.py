"""What to look at once a detector is evaluated: a review queue of the images it got most wrong, and two evaluation
runs compared (per-class AP deltas, and a slice of the images where their outcomes differ).

Both read the runs' ObjectMatch rows with one statement each and write an ids slice with one INSERT ... SELECT
(slices.services.slice_create_from_select). Lives in evaluations, not predictions, since it reads this app's tables.
"""

from typing import Any

from evaluations.models import EvaluationRun, ObjectMatch
from jobs.models import Job
from mlops import tables
from mlops.exceptions import ApplicationError, Conflict
from slices.models import Slice
from slices.services import slice_create_from_select
from tenancy.principal import Principal


def most_errors_sql(*, evaluation_run_id: int, k: int) -> tuple[str, list]:
    """The run's k images with the most false positives plus false negatives (ties by datarow id); images without an
    error are left out. A TP is stored from both sides, an FP only from the prediction's, an FN only from the label's,
    so each error is one row."""
    sql = f"""
        SELECT m.datarow_id FROM {tables.OBJECT_MATCH} m
        WHERE m.run_id = %s AND m.outcome IN (%s, %s)
        GROUP BY m.datarow_id ORDER BY count(*) DESC, m.datarow_id LIMIT %s"""
    outcomes = [ObjectMatch.Outcome.FALSE_POSITIVE.value, ObjectMatch.Outcome.FALSE_NEGATIVE.value]
    return sql, [evaluation_run_id, *outcomes, k]


def review_queue_create(*, principal: Principal, evaluation_run: EvaluationRun, name: str, k: int) -> Slice:
    """An ids slice of the k images of the run with the most errors (FP + FN at the run's IoU), for a review queue."""
    if evaluation_run.job.status != Job.Status.SUCCEEDED:
        raise Conflict(
            f"Evaluation run {evaluation_run.pk} has not succeeded (it is {evaluation_run.job.status}).",
            {"status": evaluation_run.job.status},
        )
    if k < 1:
        raise ApplicationError("k must be at least 1.", {"fields": {"k": ["At least 1."]}})
    sql, params = most_errors_sql(evaluation_run_id=evaluation_run.pk, k=k)
    return slice_create_from_select(
        project=evaluation_run.project,
        name=name,
        created_by=principal.user_id,
        select_sql=sql,
        params=params,
        description=f"most errors: top {k} of evaluation run {evaluation_run.pk} ({evaluation_run.model_version})",
    )


def _precision_value(value: Any) -> float | None:
    # pycocotools reports -1 where there is nothing to score (a class without ground truth): no AP, not a bad one.
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _class_ap(metrics: dict, class_name: str) -> float | None:
    return _precision_value(((metrics.get("per_class") or {}).get(class_name) or {}).get("ap"))


def _delta(baseline: float | None, candidate: float | None) -> float | None:
    return None if baseline is None or candidate is None else candidate - baseline


def _check_comparable(baseline: EvaluationRun, candidate: EvaluationRun) -> None:
    for field, run in (("baseline_id", baseline), ("candidate_id", candidate)):
        if run.job.status != Job.Status.SUCCEEDED:
            raise ApplicationError(
                f"Evaluation run {run.pk} has not succeeded (it is {run.job.status}).",
                {"fields": {field: ["Needs a succeeded evaluation run."]}},
            )
    if baseline.project_id != candidate.project_id:
        raise ApplicationError(
            "Both evaluation runs must belong to the same project.",
            {"fields": {"candidate_id": ["Not an evaluation run of the baseline's project."]}},
        )
    if baseline.pk == candidate.pk:
        raise ApplicationError(
            "Compare two different evaluation runs.", {"fields": {"candidate_id": ["The same run as baseline_id."]}}
        )
    # The disagreement slice pairs the runs' outcomes label by label: both must have judged the same labels alike.
    scope = ("slice_id", "splits", "iou_threshold", "max_detections")
    differing = [name for name in scope if getattr(baseline, name) != getattr(candidate, name)]
    if differing:
        raise ApplicationError(
            f"The runs were evaluated differently ({', '.join(differing)}); compare runs over the same slice, "
            "splits, IoU threshold and detections per image.",
            {"fields": {"candidate_id": [f"Differs from the baseline in {', '.join(differing)}."]}},
        )


def outcome_disagreement_sql(*, baseline_id: int, candidate_id: int) -> tuple[str, list]:
    """The images with a ground-truth label that one run found (TP) and the other missed (FN)."""
    label = ObjectMatch.Side.GROUND_TRUTH.value
    sql = f"""
        SELECT a.datarow_id FROM {tables.OBJECT_MATCH} a
        JOIN {tables.OBJECT_MATCH} b ON b.run_id = %s AND b.datarow_id = a.datarow_id AND b.side = %s
                                    AND b.label_id = a.label_id
        WHERE a.run_id = %s AND a.side = %s AND a.outcome <> b.outcome"""
    return sql, [candidate_id, label, baseline_id, label]


def evaluation_runs_compare(
    *, principal: Principal, baseline: EvaluationRun, candidate: EvaluationRun, disagreement_slice_name: str
) -> dict[str, Any]:
    """Per-class AP of both runs and the deltas (candidate minus baseline), and an ids slice of the images where a
    ground-truth label is found by one run and missed by the other."""
    _check_comparable(baseline, candidate)
    classes = sorted(set(baseline.metrics.get("per_class") or {}) | set(candidate.metrics.get("per_class") or {}))
    per_class = []
    for class_name in classes:
        baseline_ap = _class_ap(baseline.metrics, class_name)
        candidate_ap = _class_ap(candidate.metrics, class_name)
        per_class.append(
            {
                "class": class_name,
                "baseline_ap": baseline_ap,
                "candidate_ap": candidate_ap,
                "delta": _delta(baseline_ap, candidate_ap),
            }
        )
    sql, params = outcome_disagreement_sql(baseline_id=baseline.pk, candidate_id=candidate.pk)
    disagreements = slice_create_from_select(
        project=baseline.project,
        name=disagreement_slice_name,
        created_by=principal.user_id,
        select_sql=sql,
        params=params,
        description=f"evaluation runs {baseline.pk} ({baseline.model_version}) and {candidate.pk} "
        f"({candidate.model_version}) find different labels",
    )
    baseline_map = _precision_value(baseline.metrics.get("map"))
    candidate_map = _precision_value(candidate.metrics.get("map"))
    return {
        "baseline_id": baseline.pk,
        "candidate_id": candidate.pk,
        "baseline_map": baseline_map,
        "candidate_map": candidate_map,
        "map_delta": _delta(baseline_map, candidate_map),
        "per_class": per_class,
        "disagreement_slice": disagreements,
    }
