"""Selection strategies over a detector's prediction run: which images to look at next, as one SELECT of datarow ids.

An image is a candidate when the run stored a box on it (a run records nothing of an image it found no box on, so
such an image cannot be ranked). Each strategy scores the candidates from their boxes and keeps the k best (ties by
datarow id), written like the classification strategies by slices.services.slice_create_from_select:

- box_least_confidence: 1 - the best box's score (every box of the run, no floor);
- box_entropy: the mean binary entropy -(p ln p + (1 - p) ln(1 - p)) of the boxes scoring at least the floor;
  images with no such box are left out;
- box_disagreement: 1 - the mean, over the boxes of both versions scoring at least the floor, of each box's best
  IoU with a box of the same class of the other version (0 without one); an image where neither version has such
  a box scores 0 (both see nothing). Each side keeps its MAX_COMPARED_BOXES best boxes per image, so one image
  costs at most MAX_COMPARED_BOXES squared IoUs.
"""

from mlops import tables
from predictions.active_selection import Selection, candidate_filters

BOX_STRATEGIES = ("box_least_confidence", "box_entropy", "box_disagreement")
# COCO's detections per image: boxes past that many are never scored by mAP either.
MAX_COMPARED_BOXES = 100

# Scores equal to 9 decimals are ties, broken by datarow id: float summation order must not decide a ranking.
_TIE_DIGITS = 9
_BINARY_ENTROPY = (
    "CASE WHEN p.score > 0 AND p.score < 1 THEN -(p.score * ln(p.score) + (1 - p.score) * ln(1 - p.score)) ELSE 0 END"
)
_INTERSECTION = """greatest(0, least(one.x + one.w, other.x + other.w) - greatest(one.x, other.x))
                   * greatest(0, least(one.y + one.h, other.y + other.h) - greatest(one.y, other.y))"""


def box_selection_sql(*, prediction_run_id: int, selection: Selection) -> tuple[str, list]:
    """The SELECT (one column of datarow ids) and its positional parameters."""
    pool_filters, pool_params = candidate_filters(selection)
    run_boxes = " AND ".join(["p.run_id = %s", "p.kind = 'box'", *pool_filters])
    params = [prediction_run_id, *pool_params]
    if selection.strategy == "box_least_confidence":
        sql = f"""
            SELECT p.datarow_id FROM {tables.PREDICTION} p WHERE {run_boxes}
            GROUP BY p.datarow_id ORDER BY max(p.score) ASC, p.datarow_id LIMIT %s"""
        return sql, [*params, selection.k]
    if selection.strategy == "box_entropy":
        sql = f"""
            SELECT p.datarow_id FROM {tables.PREDICTION} p WHERE {run_boxes} AND p.score >= %s
            GROUP BY p.datarow_id
            ORDER BY round(avg({_BINARY_ENTROPY})::numeric, {_TIE_DIGITS}) DESC, p.datarow_id LIMIT %s"""
        return sql, [*params, selection.score_floor, selection.k]
    # Per candidate image (a lateral subquery): each side's boxes found by datarow through an index, then every
    # same-class pair of them; the work stays per image, whatever the run's size.
    sql = f"""
        WITH candidates AS (SELECT DISTINCT p.datarow_id FROM {tables.PREDICTION} p WHERE {run_boxes})
        SELECT c.datarow_id FROM candidates c
        CROSS JOIN LATERAL (
            WITH boxes AS (
                (SELECT 'run' AS side, p.id, p.ontology_class_id, p.x, p.y, p.w, p.h FROM {tables.PREDICTION} p
                 WHERE p.run_id = %s AND p.datarow_id = c.datarow_id AND p.kind = 'box' AND p.score >= %s
                 ORDER BY p.score DESC, p.id LIMIT {MAX_COMPARED_BOXES})
                UNION ALL
                (SELECT 'other', p.id, p.ontology_class_id, p.x, p.y, p.w, p.h FROM {tables.PREDICTION} p
                 WHERE p.model_version_id = %s AND p.datarow_id = c.datarow_id AND p.kind = 'box' AND p.score >= %s
                 ORDER BY p.score DESC, p.id LIMIT {MAX_COMPARED_BOXES}))
            SELECT 1 - coalesce(avg(best.iou), 1) AS disagreement
            FROM (SELECT coalesce(max(pair.intersection
                                      / nullif(one.w * one.h + other.w * other.h - pair.intersection, 0)), 0) AS iou
                  FROM boxes one
                  LEFT JOIN boxes other ON other.side <> one.side AND other.ontology_class_id = one.ontology_class_id
                  LEFT JOIN LATERAL (SELECT {_INTERSECTION} AS intersection) pair ON true
                  GROUP BY one.id) best) s
        ORDER BY round(s.disagreement::numeric, {_TIE_DIGITS}) DESC, c.datarow_id
        LIMIT %s"""
    floor = selection.score_floor
    return sql, [*params, prediction_run_id, floor, selection.other_model_version_id, floor, selection.k]
