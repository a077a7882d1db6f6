"""Model definitions, their training runs, and the labels each run trained on.

A run's status is its Job's (jobs.runner records the outcome); the run keeps what the job does not: the
frozen slice and splits it used, per-epoch metrics, bounded logs, the device, where its artifacts went.
"""

from django.db import models


class ModelDefinition(models.Model):
    """What to train: a trainer (built-in name or plugin path) and its validated hyperparameters."""

    class Task(models.TextChoices):
        CLASSIFICATION = "classification"
        DETECTION = "detection"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_definitions")
    name = models.CharField(max_length=200)
    task = models.CharField(max_length=40, choices=Task.choices, default=Task.CLASSIFICATION)
    trainer = models.CharField(max_length=300)
    # As the trainer's validate_config returned it: every default filled in, so a run is reproducible.
    hyperparameters = models.JSONField(default=dict)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="model_definition_unique_in_project")]

    def __str__(self) -> str:
        return self.name


class TrainingRun(models.Model):
    model = models.ForeignKey(ModelDefinition, on_delete=models.CASCADE, related_name="runs")
    # 1, 2, ... per model: the registered ModelVersion's version.
    number = models.PositiveIntegerField()
    job = models.OneToOneField("jobs.Job", on_delete=models.PROTECT, related_name="training_run")
    # The slice it was started on; the run keeps its own snapshot of the examples if the slice is deleted.
    slice = models.ForeignKey("slices.Slice", null=True, on_delete=models.SET_NULL, related_name="training_runs")
    train_splits = models.JSONField()  # split names, e.g. ["train"]
    validation_splits = models.JSONField(default=list)
    # The exact config the trainer ran with (the model's hyperparameters with this run's overrides).
    config = models.JSONField()
    # Class index -> [ontology class id, name], in the order the trainer's outputs use.
    classes = models.JSONField(default=list)
    train_examples = models.IntegerField(default=0)
    validation_examples = models.IntegerField(default=0)
    epochs = models.JSONField(default=list)  # one EpochMetrics dict per finished epoch
    logs = models.TextField(blank=True, default="")
    device = models.CharField(max_length=40, blank=True, default="")
    artifact_uri = models.CharField(max_length=1000, blank=True, default="")
    artifact_files = models.JSONField(default=list)
    error = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="training_run_number_unique")]

    def __str__(self) -> str:
        return f"{self.model.name} run {self.number}"


class TrainingExample(models.Model):
    """A labelled datarow as the run saw it when it started: later label edits or re-imports leave it alone."""

    pk = models.CompositePrimaryKey("run_id", "datarow_id")
    run = models.ForeignKey(
        TrainingRun, on_delete=models.CASCADE, related_name="examples", db_index=False
    )  # the key leads with it
    datarow = models.ForeignKey("datasets.DataRow", on_delete=models.CASCADE, related_name="training_examples")
    split = models.SmallIntegerField()  # slices.models.Split
    # The class of a classification run's example; null for a detection run's image (its boxes are TrainingBoxes).
    ontology_class = models.ForeignKey("datasets.OntologyClass", null=True, on_delete=models.PROTECT, related_name="+")


class TrainingBox(models.Model):
    """A detection run's box label as the run saw it when it started (a TrainingExample row per image holds its
    split); later label edits or re-imports leave it alone."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="boxes", db_index=False)
    datarow = models.ForeignKey("datasets.DataRow", on_delete=models.CASCADE, related_name="+", db_index=False)
    ontology_class = models.ForeignKey("datasets.OntologyClass", on_delete=models.PROTECT, related_name="+")
    x = models.FloatField()
    y = models.FloatField()
    w = models.FloatField()
    h = models.FloatField()

    class Meta:
        # The trainer reads a run's boxes by datarow; deleting a datarow finds its boxes by the second index.
        indexes = [
            models.Index(fields=["run", "datarow"], name="training_box_run_datarow"),
            models.Index(fields=["datarow"], name="training_box_datarow"),
        ]
