from contextlib import contextmanager

from django.db import connections

from mlops.db_routing import WRITER
from mlops.exceptions import AccessDenied
from tenancy.models import Tenant


def active_tenant_for_schema(schema_name: str) -> Tenant:
    tenant = Tenant.objects.using(WRITER).filter(schema_name=schema_name, status=Tenant.Status.ACTIVE).first()
    if tenant is None:
        raise AccessDenied(f"Tenant '{schema_name}' does not exist or is not active.")
    return tenant


@contextmanager
def tenant_scope(schema_name: str):
    """Both database aliases on the tenant's schema for the block (tasks, websocket handlers)."""
    tenant = active_tenant_for_schema(schema_name)
    connections[WRITER].set_tenant(tenant)
    try:
        yield tenant
    finally:
        for alias in connections:
            connections[alias].set_schema_to_public()
