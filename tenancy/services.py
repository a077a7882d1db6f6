import re

from django.db import transaction

from mlops.db_routing import WRITER, tenant_reads_see_writer
from mlops.exceptions import ApplicationError, Conflict
from mlops.storage import tenant_read_folder
from tenancy.models import Tenant

SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})


def tenant_provision(*, schema_name: str, name: str, database: str = "main", if_missing: bool = False) -> Tenant:
    """Create the tenant row, then its schema with every tenant migration; only then is it active.

    A provisioning that dies half way leaves the tenant 'provisioning' (requests get 503) and can be rerun.
    The tenant's folder of local files (LOCAL_READ_ROOT/<schema>/, the only one its imports read) is made too.
    """
    if not SCHEMA_NAME.match(schema_name) or schema_name in RESERVED_SCHEMAS or schema_name.startswith("pg_"):
        raise ApplicationError(
            "A tenant schema name is 2-48 characters: a lowercase letter, then lowercase letters, digits or '_'.",
            {"fields": {"schema_name": [f"'{schema_name}' is not a valid schema name."]}},
        )
    tenant_read_folder(schema_name).mkdir(parents=True, exist_ok=True)
    existing = Tenant.objects.using(WRITER).filter(schema_name=schema_name).first()
    if existing and existing.status == Tenant.Status.ACTIVE:
        if if_missing:
            return existing
        raise Conflict(f"Tenant '{schema_name}' already exists.")
    with transaction.atomic(using=WRITER):
        tenant, _ = Tenant.objects.using(WRITER).get_or_create(
            schema_name=schema_name,
            defaults={"name": name, "database": database},
        )
    tenant.create_schema(check_if_exists=True, verbosity=0)
    Tenant.objects.using(WRITER).filter(pk=tenant.pk).update(status=Tenant.Status.ACTIVE)
    # Its first requests must not read from a reader that has not replayed its schema yet.
    tenant_reads_see_writer(tenant_schema=schema_name)
    tenant.refresh_from_db(using=WRITER)
    return tenant
