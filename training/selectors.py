from django.db import connections
from django.db.models import QuerySet

from mlops import tables
from mlops.db_routing import WRITER
from mlops.exceptions import NotFound
from projects.models import Project
from slices.models import Split
from trainers.interface import Example
from training.models import ModelDefinition, TrainingRun


def model_definition_list(*, project: Project) -> QuerySet[ModelDefinition]:
    return ModelDefinition.objects.filter(project=project)


def model_definition_get(*, project: Project, model_id: int) -> ModelDefinition:
    model = ModelDefinition.objects.filter(project=project, pk=model_id).first()
    if model is None:
        raise NotFound(f"Model {model_id} does not exist in project {project.pk}.")
    return model


def training_run_list(*, model: ModelDefinition) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(model=model).select_related("job", "model", "model_version")


def training_run_get(*, project: Project, run_id: int) -> TrainingRun:
    run = (
        TrainingRun.objects.filter(model__project=project, pk=run_id)
        .select_related("job", "model", "model_version")
        .first()
    )
    if run is None:
        raise NotFound(f"Training run {run_id} does not exist in project {project.pk}.")
    return run


def training_examples(*, run: TrainingRun) -> tuple[list[Example], list[Example]]:
    """The run's snapshot as the trainer's examples (train, validation), targets indexing `run.classes`."""
    class_index = {class_id: index for index, (class_id, _) in enumerate(run.classes)}
    validation_splits = {Split[name.upper()].value for name in run.validation_splits}
    train, validation = [], []
    # From the writer: the snapshot was committed just before the job was queued.
    with connections[WRITER].cursor() as cursor:
        # A detection run's boxes come with each image, (class id, x, y, w, h) in label order.
        cursor.execute(
            f"""
            SELECT e.datarow_id, d.uri, e.ontology_class_id, e.split, b.boxes
            FROM training_trainingexample e JOIN {tables.DATAROW} d ON d.id = e.datarow_id
            LEFT JOIN LATERAL (
                SELECT array_agg(ARRAY[b.ontology_class_id, b.x, b.y, b.w, b.h] ORDER BY b.id) AS boxes
                FROM training_trainingbox b WHERE b.run_id = e.run_id AND b.datarow_id = e.datarow_id) b ON TRUE
            WHERE e.run_id = %s ORDER BY e.datarow_id""",
            [run.pk],
        )
        for datarow_id, uri, class_id, split, boxes in cursor:
            example = Example(
                key=datarow_id,
                uri=uri,
                target=-1 if class_id is None else class_index[class_id],
                boxes=tuple((class_index[int(box[0])], *box[1:]) for box in boxes or ()),
            )
            (validation if split in validation_splits else train).append(example)
    return train, validation
