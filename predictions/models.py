from django.contrib.postgres.fields import ArrayField
from django.db import models

from datasets.models import AnnotationShape


class ModelVersion(models.Model):
    """A model's version whose predictions are stored: imported from outside, or registered by a training run."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)
    # The run that produced it; null for versions imported with their predictions.
    training_run = models.OneToOneField("training.TrainingRun", null=True, on_delete=models.SET_NULL,
                                        related_name="model_version")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name", "version"], name="model_version_unique_in_project"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class PredictionRun(models.Model):
    """A model version applied to a slice's members or a dataset's datarows, as a Job."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="runs")
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="prediction_run")
    slice = models.ForeignKey("slices.Slice", null=True, on_delete=models.SET_NULL, related_name="prediction_runs")
    dataset = models.ForeignKey("datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="prediction_runs")
    # Only the slice's members in these splits (slices.models.Split values); empty: all its members.
    splits = ArrayField(models.SmallIntegerField(), default=list, blank=True)
    top_k = models.PositiveSmallIntegerField()  # a detector's: the most boxes kept per image
    score_threshold = models.FloatField(default=0.0)  # a detector keeps boxes scoring at least this
    batch_size = models.PositiveIntegerField()
    datarow_count = models.BigIntegerField(default=0)
    prediction_count = models.BigIntegerField(default=0)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(slice__isnull=True) | models.Q(dataset__isnull=True),
                                   name="prediction_run_slice_or_dataset"),
        ]


class Prediction(AnnotationShape):
    """A model version's output on a datarow: a scored class, or a scored object."""

    # Served by prediction_datarow, prediction_model_class_datarow and prediction_model_datarow (Meta.indexes).
    datarow = models.ForeignKey("datasets.DataRow", on_delete=models.CASCADE, related_name="predictions",
                                db_index=False)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions",
                                      db_index=False)
    ontology_class = models.ForeignKey("datasets.OntologyClass", on_delete=models.PROTECT, related_name="predictions")
    score = models.FloatField()
    # The prediction run that wrote it; null for imported predictions. Selection strategies read a run's rows.
    # No index of its own: prediction_run_datarow below serves every lookup by run.
    run = models.ForeignKey(PredictionRun, null=True, on_delete=models.SET_NULL, related_name="predictions",
                            db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["datarow"], name="prediction_datarow"),
            models.Index(fields=["run", "datarow"], condition=models.Q(run__isnull=False),
                         name="prediction_run_datarow"),
            # A model's class in datarow order, with the score in the index: searches merge it with datarows and
            # filter scores without reading the table (replaced (model version, class, score), 2026-11-27).
            models.Index(fields=["model_version", "ontology_class", "datarow"], include=["score"],
                         name="prediction_model_class_datarow"),
            # A version's top-1 per datarow (metrics, comparisons) walks its rows by datarow.
            models.Index(fields=["model_version", "datarow"], name="prediction_model_datarow"),
        ]
