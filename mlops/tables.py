"""The table names raw SQL uses, each read from its model (`Model._meta.db_table`): SQL names another app's table
through here, never by spelling it (tests/test_architecture.py checks), so a model that moves or a table that is
renamed leaves no stale name behind. Names resolve from Django's app registry when used, not by importing the apps,
so this platform module stays below them:

    from mlops import tables
    sql = f"SELECT d.id FROM {tables.DATAROW} d"
"""

from django.apps import apps

MODELS = {
    "DATASET": "datasets.Dataset",
    "DATAROW": "datasets.DataRow",
    "ONTOLOGY_CLASS": "datasets.OntologyClass",
    "LABEL": "datasets.Label",
    "MODEL_VERSION": "datasets.ModelVersion",
    "PREDICTION": "datasets.Prediction",
    "FIELD_CATALOG_ENTRY": "datasets.FieldCatalogEntry",
    "OBJECT_ATTRIBUTE": "datasets.ObjectAttribute",
    "SLICE": "slices.Slice",
    "SLICE_MEMBER": "slices.SliceMember",
    "TRAINING_EXAMPLE": "training.TrainingExample",
    "EVALUATION_RUN": "evaluations.EvaluationRun",
    "OBJECT_MATCH": "evaluations.ObjectMatch",
    "JOB": "jobs.Job",
}


def __getattr__(name: str) -> str:
    try:
        model = MODELS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return apps.get_model(model)._meta.db_table
