from django.db.models import QuerySet

from jobs.models import Job
from mlops.exceptions import NotFound
from tenancy.principal import Principal


def job_list(*, principal: Principal) -> QuerySet[Job]:
    return Job.objects.filter(workspace_id=principal.workspace_id)


def job_get(*, principal: Principal, job_id) -> Job:
    """The job in the caller's tenant (the connection's schema) and workspace. Other tenants' jobs are not in this
    schema; another workspace's job answers exactly as a missing one, so the answer never tells that it exists."""
    job = job_list(principal=principal).filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    return job
