"""Datasets and their datarows, ontology, ground-truth labels, and model versions with their predictions (shapes
like the labels', written by imports and by prediction runs; the predictions app owns the runs).

Layout for query speed at tens of millions of labels (see docs/design/datasets-storage.md): one row per
image with its metadata tree in `jsonb`, and one row per label in a narrow relational table keyed by
class, so "same object" and "count of objects" queries are index scans, not JSON walks.
"""

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Left

# URIs are indexed by their head: a whole URI (up to 10,000 characters) can exceed a btree entry's size.
DATAROW_URI_INDEXED_CHARS = 512


class Dataset(models.Model):
    class Status(models.TextChoices):
        READY = "ready"
        IMPORTING = "importing"
        DELETING = "deleting"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.READY)
    datarow_count = models.BigIntegerField(default=0)
    label_count = models.BigIntegerField(default=0)
    prediction_count = models.BigIntegerField(default=0)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="dataset_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name


class DataRow(models.Model):
    """One image. The image itself stays in its storage; `uri` says where (path, file://, s3://, http(s)://)."""

    class MediaType(models.TextChoices):
        IMAGE = "image"

    # No index of its own: the (dataset, ...) indexes below lead with it. Every index is maintained on each
    # imported row, so none is kept that another already serves (the same goes for labels and predictions).
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="datarows", db_index=False)
    external_id = models.TextField()
    uri = models.TextField()
    media_type = models.CharField(max_length=20, choices=MediaType.choices, default=MediaType.IMAGE)
    width = models.IntegerField(null=True)
    height = models.IntegerField(null=True)
    metadata = models.JSONField(default=dict)
    tags = ArrayField(models.TextField(), default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "external_id"], name="datarow_external_id_unique_in_dataset"),
        ]
        indexes = [
            # One GIN index over both: a condition on tags AND metadata is one index scan that intersects the two
            # posting lists inside the index, where two indexes built two bitmaps of every row each matches and
            # ANDed them (docs/design/search-postgres.md). Either column alone is served as well as by its own.
            GinIndex(
                fields=["tags", "metadata"], name="datarow_tags_metadata_gin", opclasses=["array_ops", "jsonb_path_ops"]
            ),
            # The datarow API's keyset pages (by id) and filters; text_pattern_ops serve prefix LIKE in any collation.
            models.Index(fields=["dataset", "id"], name="datarow_dataset_id"),
            models.Index(
                fields=["dataset", "external_id"],
                opclasses=["int8_ops", "text_pattern_ops"],
                name="datarow_external_id_prefix",
            ),
            models.Index(
                "dataset",
                OpClass(Left("uri", DATAROW_URI_INDEXED_CHARS), name="text_pattern_ops"),
                name="datarow_uri_prefix",
            ),
            models.Index(fields=["dataset", "width"], name="datarow_dataset_width"),
            models.Index(fields=["dataset", "height"], name="datarow_dataset_height"),
            models.Index(fields=["dataset", "created_at"], name="datarow_dataset_created"),
        ]


class OntologyClass(models.Model):
    """A class of the project's ontology; `name` is the full path (`vehicle/car/sedan`)."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="ontology")
    name = models.CharField(max_length=500)
    parent = models.ForeignKey("self", null=True, on_delete=models.CASCADE, related_name="children")
    # Set by COCO imports (the last one wins) so COCO results files, which name classes by id, find them.
    coco_category_id = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="ontology_class_unique_in_project"),
            models.UniqueConstraint(
                fields=["project", "coco_category_id"], name="ontology_coco_category_unique_in_project"
            ),
        ]


class AnnotationKind(models.TextChoices):
    CLASSIFICATION = "classification"
    BOX = "box"
    POLYGON = "polygon"


class AnnotationShape(models.Model):
    """What labels and predictions share: the kind, the box (x, y, w, h in pixels), area, polygon, attributes."""

    kind = models.CharField(max_length=20, choices=AnnotationKind.choices)
    x = models.FloatField(null=True)
    y = models.FloatField(null=True)
    w = models.FloatField(null=True)
    h = models.FloatField(null=True)
    area = models.FloatField(null=True)
    polygon = models.JSONField(null=True)
    attributes = models.JSONField(default=dict)

    class Meta:
        abstract = True


class Label(AnnotationShape):
    """Ground truth on a datarow: a classification, or an object with a box (and optionally a polygon)."""

    # Served by label_datarow_class and label_class_datarow (Meta.indexes).
    datarow = models.ForeignKey(DataRow, on_delete=models.CASCADE, related_name="labels", db_index=False)
    ontology_class = models.ForeignKey(OntologyClass, on_delete=models.PROTECT, related_name="labels", db_index=False)
    # Who or what produced it: a user id, or `import:<job id>`.
    source = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=200)

    class Meta:
        indexes = [
            # A datarow's labels, and its classes index-only: the class facet merges it with the sorted matches
            # (replaced (datarow), 2026-11-27).
            models.Index(fields=["datarow", "ontology_class"], name="label_datarow_class"),
            models.Index(fields=["ontology_class", "datarow"], name="label_class_datarow"),
        ]


class ModelVersion(models.Model):
    """A model's version whose predictions are stored: imported from outside, or registered by a training run."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)
    # The run that produced it; null for versions imported with their predictions.
    training_run = models.OneToOneField(
        "training.TrainingRun", null=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Kept from when the predictions app owned it (state-only move, datasets/migrations/0007).
        db_table = "predictions_modelversion"
        constraints = [
            models.UniqueConstraint(fields=["project", "name", "version"], name="model_version_unique_in_project"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class Prediction(AnnotationShape):
    """A model version's output on a datarow: a scored class, or a scored object."""

    # Served by prediction_datarow, prediction_model_class_datarow and prediction_model_datarow (Meta.indexes).
    datarow = models.ForeignKey(
        "datasets.DataRow", on_delete=models.CASCADE, related_name="predictions", db_index=False
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="predictions", db_index=False
    )
    ontology_class = models.ForeignKey("datasets.OntologyClass", on_delete=models.PROTECT, related_name="predictions")
    score = models.FloatField()
    # The prediction run that wrote it; null for imported predictions. Selection strategies read a run's rows.
    # No index of its own: prediction_run_datarow below serves every lookup by run.
    run = models.ForeignKey(
        "predictions.PredictionRun", null=True, on_delete=models.SET_NULL, related_name="predictions", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Kept from when the predictions app owned it (state-only move, datasets/migrations/0007).
        db_table = "predictions_prediction"
        indexes = [
            models.Index(fields=["datarow"], name="prediction_datarow"),
            models.Index(
                fields=["run", "datarow"], condition=models.Q(run__isnull=False), name="prediction_run_datarow"
            ),
            # A model's class in datarow order, with the score in the index: searches merge it with datarows and
            # filter scores without reading the table (replaced (model version, class, score), 2026-11-27).
            models.Index(
                fields=["model_version", "ontology_class", "datarow"],
                include=["score"],
                name="prediction_model_class_datarow",
            ),
            # A version's top-1 per datarow (metrics, comparisons) walks its rows by datarow.
            models.Index(fields=["model_version", "datarow"], name="prediction_model_datarow"),
        ]


class FieldCatalogEntry(models.Model):
    """A metadata path seen in a project, its type and how many datarows have it; imports keep it current."""

    class FieldType(models.TextChoices):
        STRING = "string"
        NUMBER = "number"
        BOOLEAN = "boolean"
        DATETIME = "datetime"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="field_catalog")
    path = models.CharField(max_length=500)
    field_type = models.CharField(max_length=20, choices=FieldType.choices)
    row_count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "path"], name="field_path_unique_in_project")]


class ObjectAttribute(models.Model):
    """An object attribute of a project's labels (`attributes.<name>`) and the one type its values have: imports
    infer it from the top-level scalar attributes they bring, or the ontology API declares it. Search compares a value of this type through the typed
    expression indexes of `manage.py search_attribute_indexes`; other attributes, and values of another type, are
    read from the JSON as before (docs/query-language.md, "Object attributes")."""

    class ValueType(models.TextChoices):
        BOOLEAN = "boolean"
        NUMBER = "number"
        ENUM = "enum"

    # Past this many distinct strings an attribute is free text, not an enum: it stays out of the catalog.
    MAX_ENUM_VALUES = 100

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="object_attributes")
    name = models.CharField(max_length=200)
    value_type = models.CharField(max_length=20, choices=ValueType.choices)
    # The values seen or declared, for an enum (sorted); empty otherwise.
    enum_values = ArrayField(models.TextField(), default=list)
    # Declared through the ontology API rather than inferred by an import; imports only add values to an enum.
    declared = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="object_attribute_unique_in_project")]
