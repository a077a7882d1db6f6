"""The rows tests start from, with the defaults no test cares about; a test passes only what it asserts on.

Plain functions over the ORM: each writes through whatever tenant is active (`tenant_scope`), as the inline
`objects.create` calls they replace did. A field given as a callable is called with the row's index.
"""

import time
import uuid
from collections.abc import Callable
from typing import Any

from datasets.models import DataRow, Dataset
from evaluations.models import EvaluationRun
from jobs.models import Job
from predictions.models import ModelVersion
from projects.models import Project
from slices.models import Slice
from tenancy.principal import Principal
from training.models import ModelDefinition

WORKSPACE = "ws-1"


def project_make(
    *, name: str | None = None, workspace_id: str = WORKSPACE, created_by: str = "tester", **fields
) -> Project:
    """A project; without a name, a unique one, so tests sharing a committed tenant never collide."""
    return Project.objects.create(
        workspace_id=workspace_id, name=name or f"project-{uuid.uuid4().hex[:8]}", created_by=created_by, **fields
    )


def dataset_make(*, project: Project | int, name: str = "main", created_by: str = "tester", **fields) -> Dataset:
    owner = {"project": project} if isinstance(project, Project) else {"project_id": project}
    return Dataset.objects.create(**owner, name=name, created_by=created_by, **fields)


def datarows_make(
    *, dataset: Dataset, count: int, start: int = 0, **fields: Any | Callable[[int], Any]
) -> list[DataRow]:
    """`count` datarows in one statement, numbered from `start`: external id `r<i>`, uri `s3://b/<i>.jpg` unless
    given; a callable field is called with i (`metadata=lambda i: {"i": i}`)."""
    defaults: dict[str, Any] = {"external_id": lambda i: f"r{i}", "uri": lambda i: f"s3://b/{i}.jpg"}
    values = {**defaults, **fields}
    return DataRow.objects.bulk_create(
        DataRow(dataset=dataset, **{name: value(i) if callable(value) else value for name, value in values.items()})
        for i in range(start, start + count)
    )


def slice_make(
    *, project: Project | int, name: str | None = None, kind: str = Slice.Kind.IDS, created_by: str = "tester", **fields
) -> Slice:
    owner = {"project": project} if isinstance(project, Project) else {"project_id": project}
    return Slice.objects.create(
        **owner, name=name or f"slice-{uuid.uuid4().hex[:8]}", kind=kind, created_by=created_by, **fields
    )


def model_definition_make(
    *, project: Project, name: str = "model", trainer: str = "image-classifier", created_by: str = "tester", **fields
) -> ModelDefinition:
    return ModelDefinition.objects.create(project=project, name=name, trainer=trainer, created_by=created_by, **fields)


def model_version_make(*, project: Project, name: str = "model", version: str = "1", **fields) -> ModelVersion:
    return ModelVersion.objects.create(project=project, name=name, version=version, **fields)


def job_make(*, kind: str, workspace_id: str = WORKSPACE, owner_id: str = "tester", **fields) -> Job:
    return Job.objects.create(kind=kind, workspace_id=workspace_id, owner_id=owner_id, **fields)


def evaluation_run_make(
    *, model_version: ModelVersion, status: str = Job.Status.SUCCEEDED, created_by: str = "tester", **fields
) -> EvaluationRun:
    """An evaluation run as its job leaves it (succeeded unless given), with its own job; metrics and matches are the
    test's to write."""
    job = job_make(kind="evaluation-run", owner_id=created_by, status=status, celery_task_id=str(uuid.uuid4()))
    return EvaluationRun.objects.create(
        project_id=model_version.project_id, model_version=model_version, job=job, created_by=created_by, **fields
    )


def principal_make(
    *,
    tenant: str,
    user_id: str = "auth0|editor",
    role: str = "editor",
    workspace_id: str = WORKSPACE,
    database: str = "main",
    lifetime: int = 3600,
) -> Principal:
    """Who acts in a service-level test (a token's holder, once authentication has checked it)."""
    return Principal(
        user_id=user_id,
        email=f"{user_id.split('|')[-1]}@example.com",
        tenant_schema=tenant,
        workspace_id=workspace_id,
        role=role,
        database=database,
        expires_at=int(time.time()) + lifetime,
    )


def token_make(
    auth0,
    platform,
    *,
    tenant: str,
    role: str = "editor",
    workspace: str = WORKSPACE,
    database: str = "main",
    lifetime: int = 3600,
) -> str:
    """A valid token of a new user, whom the platform grants `role` in `workspace` of `tenant`."""
    sub = f"auth0|{uuid.uuid4().hex[:16]}"
    platform.grant(sub, tenant=tenant, workspace=workspace, role=role, database=database)
    return auth0.issue(sub, lifetime=lifetime)
