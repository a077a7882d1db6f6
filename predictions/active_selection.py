"""Selection strategies: which of a prediction run's datarows to look at next, as one SELECT of datarow ids.

Each strategy scores a datarow from the run's stored top-k classifications and keeps the k best by that score
(ties by datarow id), so slices.services.slice_create_from_select writes the result with one INSERT ... SELECT.
Entropy and margin see only the stored top-k: with top_k equal to the number of classes they are exact.
"""

from dataclasses import dataclass

from mlops import tables
from predictions.ground_truth import classification_truth_sql

STRATEGIES = ("least_confidence", "margin", "entropy", "disagreement", "random")

# The order that puts the datarows to pick first at the top, per strategy, over the `scored` columns.
_ORDER = {
    "least_confidence": "s.top1_score ASC",
    "margin": "s.top1_score - s.top2_score ASC",
    "entropy": "s.entropy DESC",
    # Most confidently wrong first: the labels most worth a second look, or the model's worst blind spots.
    "disagreement": "s.top1_score DESC",
    # md5 of seed and id: a uniform, seeded and reproducible order (also outside the database).
    "random": "md5(%s || ':' || s.datarow_id::text)",
}


@dataclass(frozen=True)
class Selection:
    strategy: str
    k: int
    seed: int = 0
    pool_slice_id: int | None = None
    unlabeled_only: bool = False
    # The box strategies' (predictions/detection_selection.py): boxes scoring below the floor are left out of
    # box_entropy and box_disagreement; box_disagreement compares the run's boxes with this version's.
    score_floor: float = 0.05
    other_model_version_id: int | None = None


def candidate_filters(selection: Selection) -> tuple[list[str], list]:
    """The pool and unlabeled_only conditions on `p.datarow_id`, and their parameters."""
    filters, params = [], []
    if selection.pool_slice_id is not None:
        filters.append(
            f"EXISTS (SELECT 1 FROM {tables.SLICE_MEMBER} m WHERE m.slice_id = %s AND m.datarow_id = p.datarow_id)"
        )
        params.append(selection.pool_slice_id)
    if selection.unlabeled_only:
        filters.append(f"NOT EXISTS (SELECT 1 FROM {tables.LABEL} l WHERE l.datarow_id = p.datarow_id)")
    return filters, params


def selection_sql(*, prediction_run_id: int, selection: Selection) -> tuple[str, list]:
    """The SELECT (one column of datarow ids) and its positional parameters."""
    pool_filters, pool_params = candidate_filters(selection)
    # Random draws from any run's datarows, a detector's images too; the others score stored classifications.
    kind = [] if selection.strategy == "random" else ["p.kind = 'classification'"]
    filters, params = ["p.run_id = %s", *kind, *pool_filters], [prediction_run_id, *pool_params]
    disagreement = ""
    if selection.strategy == "disagreement":
        truth = classification_truth_sql("l.datarow_id IN (SELECT datarow_id FROM scored)")
        disagreement = f"JOIN ({truth}) t ON t.datarow_id = s.datarow_id AND t.ontology_class_id <> s.top1_class"
    sql = f"""
        WITH scored AS (
            SELECT p.datarow_id,
                   max(p.score) AS top1_score,
                   coalesce((array_agg(p.score ORDER BY p.score DESC, p.id))[2], 0) AS top2_score,
                   (array_agg(p.ontology_class_id ORDER BY p.score DESC, p.id))[1] AS top1_class,
                   -sum(CASE WHEN p.score > 0 THEN p.score * ln(p.score) ELSE 0 END) AS entropy
            FROM {tables.PREDICTION} p
            WHERE {" AND ".join(filters)}
            GROUP BY p.datarow_id)
        SELECT s.datarow_id FROM scored s {disagreement}
        ORDER BY {_ORDER[selection.strategy]}, s.datarow_id
        LIMIT %s"""
    if selection.strategy == "random":
        params.append(str(selection.seed))
    return sql, [*params, selection.k]
