"""Which label is a datarow's ground truth class: one rule for training snapshots, metrics and selection."""

from mlops import tables


def classification_truth_sql(datarow_condition: str) -> str:
    """SELECT datarow_id, ontology_class_id: each datarow's latest classification label, for the datarows that
    `datarow_condition` (an SQL condition on `l.datarow_id`) admits. A datarow with several classification labels
    counts as its most recently updated one."""
    return f"""
        SELECT DISTINCT ON (l.datarow_id) l.datarow_id, l.ontology_class_id
        FROM {tables.LABEL} l
        WHERE l.kind = 'classification' AND ({datarow_condition})
        ORDER BY l.datarow_id, l.updated_at DESC, l.id DESC"""
