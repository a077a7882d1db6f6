from django.conf import settings
from django.db import transaction

from jobs.models import Job
from jobs.services import job_create
from mlops.exceptions import ApplicationError, Conflict
from projects.models import Project
from tenancy.principal import Principal


def search_reindex_start(*, principal: Principal, project: Project) -> Job:
    """Queue a full reindex of the project (Elasticsearch only): a new index, filled, then swapped in."""
    from search.tasks import search_reindex  # the task module imports the indexing services

    if settings.SEARCH_ENGINE != "elasticsearch":
        raise ApplicationError("Nothing to reindex: the PostgreSQL search engine reads the tables themselves.")
    with transaction.atomic():
        # One reindex per project at a time: two would each swap in their own index.
        running = Job.objects.select_for_update().filter(
            kind=search_reindex.job_kind, params__project_id=project.pk,
            status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first()
        if running is not None:
            raise Conflict(f"Project {project.pk} is already being reindexed by job {running.pk}.",
                           {"job_id": str(running.pk)})
        return job_create(principal=principal, task=search_reindex, params={"project_id": project.pk})
