"""The Celery app. Every task message carries its tenant in a header; the worker sets it on both aliases."""

import os

from celery import Celery, Task
from celery.signals import (
    before_task_publish,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_shutdown,
)
from click import Option

from mlops.metrics_server import WorkerMetricsEndpoint, process_exited, use_private_multiprocess_dir

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")

app = Celery("mlops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Metrics: a worker's processes write to a directory of its own, made before the pool forks; the main process serves it.
app.user_options["worker"].add(
    Option(
        ["--metrics-port"],
        type=int,
        default=None,
        help="Serve this worker's /metrics on this port (default METRICS_WORKER_PORT).",
    )
)
app.steps["worker"].add(WorkerMetricsEndpoint)
celeryd_init.connect(lambda **kwargs: use_private_multiprocess_dir("worker"), weak=False)
worker_process_shutdown.connect(lambda **kwargs: process_exited(os.getpid()), weak=False)

TENANT_HEADER = "tenant_schema"


def _current_tenant_schema() -> str | None:
    from django.db import connection
    from django_tenants.utils import get_public_schema_name

    schema = connection.schema_name
    return schema if schema and schema != get_public_schema_name() else None


class TenantTask(Task):
    """A task that works on one tenant's data: it refuses to run outside a tenant schema (fail closed).

    The check is here, not in task_prerun, because Celery logs and swallows a signal handler's exception:
    a task whose tenant header is missing, or names no active tenant, would otherwise run in `public`.
    """

    abstract = True

    def __call__(self, *args, **kwargs):
        if _current_tenant_schema() is None:
            raise RuntimeError(f"task {self.name} was sent without an active tenant; refusing to touch any schema")
        return super().__call__(*args, **kwargs)


def _tenant_schema_of(request) -> str | None:
    """A worker finds custom message headers in `request.headers`. Eager apply() (tests) never publishes,
    so the caller's own schema stands in for what before_task_publish would have attached."""
    schema = (request.headers or {}).get(TENANT_HEADER)
    return schema or (_current_tenant_schema() if request.is_eager else None)


@setup_logging.connect
def _keep_json_logging(**kwargs):
    """Without a receiver Celery swaps the root handlers for plain text; keep settings.LOGGING's JSON lines."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@before_task_publish.connect
def _attach_tenant(headers=None, **kwargs):
    schema = _current_tenant_schema()
    if headers is not None and TENANT_HEADER not in headers and schema:
        headers[TENANT_HEADER] = schema


@before_task_publish.connect
def _carry_writer_pin(headers=None, **kwargs):
    """A task enqueued right after a write reads from the writer: the reader may not have the rows yet."""
    from mlops.db_routing import stamp_task_headers

    if headers is not None:
        stamp_task_headers(headers)


@task_prerun.connect
def _enter_tenant(task=None, **kwargs):
    from django.db import connections

    from mlops.db_routing import WRITER, allow_reader
    from mlops.observability import bind_log_context, clear_log_context, log_context
    from tenancy.context import active_tenant_for_schema

    request = task.request
    schema = _tenant_schema_of(request)
    if request.is_eager:
        # An eager task runs inside its caller: keep the caller's read pinning, and give back its tenant and
        # log context afterwards.
        request.caller_tenant, request.caller_log_context = connections[WRITER].tenant, log_context.get()
    else:
        allow_reader()
        clear_log_context()
    bind_log_context(task=task.name, task_id=request.id, tenant=schema)
    if schema:
        connections[WRITER].set_tenant(active_tenant_for_schema(schema))


@task_prerun.connect
def _keep_writer_pin(task=None, **kwargs):
    """After _enter_tenant allowed the reader: a task enqueued right after a write still reads from the writer."""
    from mlops.db_routing import pin_if_enqueued_after_write

    if not task.request.is_eager:
        pin_if_enqueued_after_write(task.request)


@task_postrun.connect
def _leave_tenant(task=None, **kwargs):
    from django.db import connections

    from mlops.db_routing import WRITER
    from mlops.observability import log_context

    request = task.request
    if request.is_eager:
        if request.caller_tenant is None:
            connections[WRITER].set_schema_to_public()
        else:
            connections[WRITER].set_tenant(request.caller_tenant)
        log_context.set(request.caller_log_context)
        return
    for alias in connections:
        connections[alias].set_schema_to_public()
