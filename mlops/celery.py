"""The Celery app. Every task message carries its tenant in a header; the worker sets it on both aliases."""

import os

from celery import Celery, Task
from celery.signals import before_task_publish, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

app = Celery("mlops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

TENANT_HEADER = "tenant_schema"


class TenantTask(Task):
    """A task that works on one tenant's data: it refuses to run without a tenant header (fail closed)."""

    abstract = True
    needs_tenant = True


@before_task_publish.connect
def _attach_tenant(headers=None, **kwargs):
    from django.db import connection
    from django_tenants.utils import get_public_schema_name

    schema = connection.schema_name
    if headers is not None and TENANT_HEADER not in headers and schema and schema != get_public_schema_name():
        headers[TENANT_HEADER] = schema


@task_prerun.connect
def _enter_tenant(task=None, **kwargs):
    from django.db import connections

    from mlops.db_routing import WRITER, allow_reader
    from mlops.observability import bind_log_context, clear_log_context
    from tenancy.context import active_tenant_for_schema

    allow_reader()
    clear_log_context()
    schema = task.request.get(TENANT_HEADER)
    bind_log_context(task=task.name, task_id=task.request.id, tenant=schema)
    if schema:
        connections[WRITER].set_tenant(active_tenant_for_schema(schema))
    elif getattr(task, "needs_tenant", False):
        raise RuntimeError(f"task {task.name} was sent without a tenant; refusing to touch any schema")


@task_postrun.connect
def _leave_tenant(**kwargs):
    from django.db import connections

    for alias in connections:
        connections[alias].set_schema_to_public()
