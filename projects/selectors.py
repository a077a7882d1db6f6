from django.db.models import QuerySet

from mlops.exceptions import AccessDenied, NotFound
from projects.models import Project
from tenancy.principal import Principal


def project_list(*, principal: Principal) -> QuerySet[Project]:
    return Project.objects.filter(workspace_id=principal.workspace_id)


def project_get(*, principal: Principal, project_id: int) -> Project:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise NotFound(f"Project {project_id} does not exist.")
    if project.workspace_id != principal.workspace_id:
        raise AccessDenied(f"Project {project_id} belongs to another workspace.")
    return project
