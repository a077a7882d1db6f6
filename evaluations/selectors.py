from django.db.models import QuerySet

from evaluations.models import EvaluationRun, ObjectMatch
from mlops.exceptions import NotFound
from projects.models import Project


def evaluation_run_list(*, project: Project) -> QuerySet[EvaluationRun]:
    return EvaluationRun.objects.filter(project=project).select_related("job", "model_version")


def evaluation_run_get(*, project: Project, evaluation_run_id: int) -> EvaluationRun:
    run = evaluation_run_list(project=project).filter(pk=evaluation_run_id).first()
    if run is None:
        raise NotFound(f"Evaluation run {evaluation_run_id} does not exist in project {project.pk}.")
    return run


def object_match_list(
    *, run: EvaluationRun, outcome: str | None = None, side: str | None = None, ontology_class_id: int | None = None
) -> QuerySet[ObjectMatch]:
    """The run's matches, optionally of one outcome, side or class (the label's or the prediction's own)."""
    matches = ObjectMatch.objects.filter(run=run)
    if outcome is not None:
        matches = matches.filter(outcome=outcome)
    if side is not None:
        matches = matches.filter(side=side)
    if ontology_class_id is not None:
        matches = matches.filter(ontology_class_id=ontology_class_id)
    return matches
