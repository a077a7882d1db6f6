from django.db import models

from datasets.models import AnnotationShape


class ModelVersion(models.Model):
    """A model's version whose predictions are stored: imported from outside, or registered by a training run."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name", "version"], name="model_version_unique_in_project"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class Prediction(AnnotationShape):
    """A model version's output on a datarow: a scored class, or a scored object."""

    datarow = models.ForeignKey("datasets.DataRow", on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    ontology_class = models.ForeignKey("datasets.OntologyClass", on_delete=models.PROTECT, related_name="predictions")
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["datarow"], name="prediction_datarow"),
            models.Index(fields=["model_version", "ontology_class", "score"], name="prediction_model_class_score"),
        ]
