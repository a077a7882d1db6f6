from collections.abc import Iterator, Set

from django.db.models import QuerySet, Value
from django.db.models.functions import Concat

from mlops.exceptions import NotFound
from predictions.models import ModelVersion, PredictionRun
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


class ProjectModelVersionRefs(Set[str]):
    """A project's model versions as queries name them, 'name@version', read only when a query names one."""

    def __init__(self, project_id: int, using: str):
        self.project_id, self.using = project_id, using

    def _refs(self) -> QuerySet:
        # The same expression the search engines compare with, so what validates is what matches.
        return (ModelVersion.objects.using(self.using).filter(project_id=self.project_id)
                .annotate(ref=Concat("name", Value("@"), "version")))

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, str) and self._refs().filter(ref=ref).exists()

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs().order_by("ref").values_list("ref", flat=True))

    def __len__(self) -> int:
        return self._refs().count()


def model_version_refs(*, project_id: int, using: str) -> Set[str]:
    """What `validate(..., model_versions=...)` checks `model = 'name@version'` against, in this project."""
    return ProjectModelVersionRefs(project_id, using)


def prediction_run_list(*, project: Project) -> QuerySet[PredictionRun]:
    return PredictionRun.objects.filter(model_version__project=project).select_related("job", "model_version")


def prediction_run_get(*, project: Project, prediction_run_id: int) -> PredictionRun:
    prediction_run = prediction_run_list(project=project).filter(pk=prediction_run_id).first()
    if prediction_run is None:
        raise NotFound(f"Prediction run {prediction_run_id} does not exist in project {project.pk}.")
    return prediction_run
