from django.db import IntegrityError, transaction

from mlops.exceptions import Conflict
from projects.models import Project
from tenancy.principal import Principal


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A project named '{name}' already exists in this workspace.",
        {"fields": {"name": ["This name is already taken in this workspace."]}},
    )


def project_create(*, principal: Principal, name: str, description: str = "") -> Project:
    try:
        with transaction.atomic():
            return Project.objects.create(
                workspace_id=principal.workspace_id, name=name, description=description, created_by=principal.user_id
            )
    except IntegrityError as error:
        raise _name_taken(name) from error


def project_update(*, project: Project, name: str | None = None, description: str | None = None) -> Project:
    if name is not None:
        project.name = name
    if description is not None:
        project.description = description
    try:
        with transaction.atomic():
            project.save(update_fields=["name", "description", "updated_at"])
    except IntegrityError as error:
        raise _name_taken(project.name) from error
    return project


def project_delete(*, project: Project) -> None:
    """Only an empty project: a dataset of millions of rows goes through its own set-based delete job, never
    through the ORM's cascade collector."""
    with transaction.atomic():
        if project.datasets.exists():
            raise Conflict(
                f"Project {project.pk} still has datasets; delete them first.",
                {"datasets": list(project.datasets.values_list("id", flat=True)[:100])},
            )
        project.delete()
