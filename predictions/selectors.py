from django.db.models import QuerySet

from datasets.models import ModelVersion
from mlops.exceptions import NotFound
from predictions.models import PredictionRun
from projects.models import Project


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("training_run")


def model_version_get(*, project: Project, model_version_id: int) -> ModelVersion:
    model_version = model_version_list(project=project).filter(pk=model_version_id).first()
    if model_version is None:
        raise NotFound(f"Model version {model_version_id} does not exist in project {project.pk}.")
    return model_version


def model_version_exists(*, project: Project, name: str, version: str | None = None) -> bool:
    versions = ModelVersion.objects.filter(project=project, name=name)
    return (versions.filter(version=version) if version is not None else versions).exists()


def prediction_run_list(*, project: Project) -> QuerySet[PredictionRun]:
    return PredictionRun.objects.filter(model_version__project=project).select_related("job", "model_version")


def prediction_run_get(*, project: Project, prediction_run_id: int) -> PredictionRun:
    prediction_run = prediction_run_list(project=project).filter(pk=prediction_run_id).first()
    if prediction_run is None:
        raise NotFound(f"Prediction run {prediction_run_id} does not exist in project {project.pk}.")
    return prediction_run
