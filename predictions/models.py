from django.contrib.postgres.fields import ArrayField
from django.db import models

from datasets.models import ModelVersion


class PredictionRun(models.Model):
    """A model version applied to a slice's members or a dataset's datarows, as a Job."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="runs")
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="prediction_run")
    slice = models.ForeignKey("slices.Slice", null=True, on_delete=models.SET_NULL, related_name="prediction_runs")
    dataset = models.ForeignKey(
        "datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="prediction_runs"
    )
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
            models.CheckConstraint(
                condition=models.Q(slice__isnull=True) | models.Q(dataset__isnull=True),
                name="prediction_run_slice_or_dataset",
            ),
        ]
