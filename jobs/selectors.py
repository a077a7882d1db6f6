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


def queued_jobs_across_tenants() -> list[tuple[str, int, float]]:
    """(kind, count, age of the oldest in seconds) of the jobs queued in every active tenant: one statement over each
    tenant's partial index of queued jobs, on a connection of the caller's thread that is closed after it, under
    METRICS_QUEUE_STATEMENT_TIMEOUT_MS (a metrics scrape must stay cheap)."""
    from django.conf import settings
    from django.db import connections
    from django_tenants.utils import get_public_schema_name
    from psycopg import sql

    from mlops.db_routing import WRITER
    from tenancy.models import Tenant

    connection = connections[WRITER]
    try:
        schemas = list(
            Tenant.objects.using(WRITER)
            .filter(status=Tenant.Status.ACTIVE)
            .exclude(schema_name=get_public_schema_name())
            .values_list("schema_name", flat=True)
        )
        if not schemas:
            return []
        per_tenant = sql.SQL(
            "SELECT kind, count(*), extract(epoch FROM now() - min(created_at)) FROM {}.{} "
            "WHERE status = 'queued' GROUP BY kind"
        )
        statement = sql.SQL(" UNION ALL ").join(
            per_tenant.format(sql.Identifier(schema), sql.Identifier(Job._meta.db_table)) for schema in schemas
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                [f"{settings.METRICS_QUEUE_STATEMENT_TIMEOUT_MS}ms"],
            )
            cursor.execute(statement.as_string(connection.connection))
            return cursor.fetchall()
    finally:
        # The scrape's thread ends here; its connection must not outlive it.
        connection.close()
