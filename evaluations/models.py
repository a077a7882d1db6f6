from django.contrib.postgres.fields import ArrayField
from django.db import models


class EvaluationRun(models.Model):
    """A detector's box predictions matched against the box labels of a slice (or some of its splits), as a Job.

    `metrics` holds the COCO summary once the job succeeds: `map`, `ap50`, `ap75`, `ap_small`, `ap_medium`,
    `ap_large`, `ar1`, `ar10`, `ar100`, and `per_class` (class name -> `ap`, `ap50`, `precision`/`recall` points);
    also `ar_small`/`ar_medium`/`ar_large`, `tp`/`fp`/`fn` (the stored matches), and per class `ap75` and
    `ground_truth` (docs/evaluation.md).
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="evaluation_runs")
    model_version = models.ForeignKey("datasets.ModelVersion", on_delete=models.CASCADE, related_name="evaluation_runs")
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="evaluation_run")
    slice = models.ForeignKey("slices.Slice", null=True, on_delete=models.SET_NULL, related_name="evaluation_runs")
    # Only the slice's members in these splits (slices.models.Split values); empty: all its members.
    splits = ArrayField(models.SmallIntegerField(), default=list, blank=True)
    # The matches stored are those at this IoU; the metrics cover COCO's 0.50:0.95 as pycocotools does.
    iou_threshold = models.FloatField(default=0.5)
    max_detections = models.PositiveSmallIntegerField(default=100)
    image_count = models.BigIntegerField(default=0)
    ground_truth_count = models.BigIntegerField(default=0)
    prediction_count = models.BigIntegerField(default=0)
    metrics = models.JSONField(default=dict)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)


class ObjectMatch(models.Model):
    """One object's outcome in an evaluation run: a ground-truth box (TP or FN) or a predicted box (TP or FP).

    A TP is stored twice, once from each side, so every regular label and every scored prediction in scope has one
    row. `iou` and `prediction` on an FN are those of the best-IoU prediction of any class (what confusion queries
    need); `predicted_class` is that prediction's class. An FP carries the best-IoU regular label of any class as
    `label_id`/`iou` (null when none overlaps); on the prediction side `predicted_class` is the prediction's own
    class. Not stored: crowd labels, predictions matched to a crowd (COCO ignores both), and predictions past the
    run's max_detections in their image and class (docs/evaluation.md). Label and prediction ids are plain
    numbers, not foreign keys: the rows are the run's record of what it saw, and bulk writes skip the per-row checks.
    """

    class Outcome(models.TextChoices):
        TRUE_POSITIVE = "tp"
        FALSE_POSITIVE = "fp"
        FALSE_NEGATIVE = "fn"

    class Side(models.TextChoices):
        GROUND_TRUTH = "label"
        PREDICTION = "prediction"

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="matches", db_index=False)
    # No constraint: a datarow's matches go with it through a statement trigger (migration 0002), since datasets
    # deletes datarows in SQL batches, where a foreign key would fail or cascade one query per row.
    datarow = models.ForeignKey(
        "datasets.DataRow",
        on_delete=models.CASCADE,
        related_name="object_matches",
        db_index=False,
        db_constraint=False,
    )
    side = models.CharField(max_length=10, choices=Side.choices)
    outcome = models.CharField(max_length=2, choices=Outcome.choices)
    label_id = models.BigIntegerField(null=True)
    prediction_id = models.BigIntegerField(null=True)
    # The label's class for the ground-truth side, the prediction's for the prediction side.
    ontology_class = models.ForeignKey(
        "datasets.OntologyClass", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    predicted_class = models.ForeignKey(
        "datasets.OntologyClass", null=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    iou = models.FloatField(null=True)
    score = models.FloatField(null=True)

    class Meta:
        indexes = [
            # Queries over a run's errors: by outcome and class in datarow order, iou and score from the index.
            models.Index(
                fields=["run", "outcome", "ontology_class", "datarow"],
                include=["iou", "score", "predicted_class"],
                name="match_run_outcome_class_row",
            ),
            models.Index(fields=["run", "datarow"], name="match_run_datarow"),
            # Deleting a datarow finds its matches.
            models.Index(fields=["datarow"], name="match_datarow"),
        ]
