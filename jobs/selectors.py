from django.db.models import QuerySet

from jobs.models import Job
from mlops.exceptions import AccessDenied, NotFound
from tenancy.principal import Principal


def job_list(*, principal: Principal) -> QuerySet[Job]:
    return Job.objects.filter(workspace_id=principal.workspace_id)


def job_get(*, principal: Principal, job_id) -> Job:
    """The job in the caller's tenant (the connection's schema) and workspace; other tenants' jobs do not exist here."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    if job.workspace_id != principal.workspace_id:
        raise AccessDenied(f"Job {job_id} belongs to another workspace.")
    return job
