from django.db.models import QuerySet

from mlops.exceptions import NotFound
from projects.models import Project
from tenancy.principal import Principal


def project_list(*, principal: Principal) -> QuerySet[Project]:
    return Project.objects.filter(workspace_id=principal.workspace_id)


def project_get(*, principal: Principal, project_id: int) -> Project:
    """The project in the caller's workspace. Another workspace's project answers exactly as a missing one:
    a different answer would tell that the id exists."""
    project = project_list(principal=principal).filter(pk=project_id).first()
    if project is None:
        raise NotFound(f"Project {project_id} does not exist.")
    return project
