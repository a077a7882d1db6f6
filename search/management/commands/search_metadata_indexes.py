"""Create the indexes that make datetime conditions on metadata paths index scans, per tenant.

A command rather than a side effect of imports: building an index over millions of rows takes minutes and is an
operator's decision (a path may be in the catalog of one small project only); CREATE INDEX CONCURRENTLY does not
block writes, and an index already there is left alone, so it can run again after imports bring new paths.
"""

from django.core.management.base import BaseCommand
from django.db import connections

from datasets.models import FieldCatalogEntry
from mlops.db_routing import WRITER
from search.engines.postgres import metadata_datetime_indexes
from tenancy.context import tenant_scope
from tenancy.models import Tenant


class Command(BaseCommand):
    help = "Index every datetime metadata path of the tenants' field catalogs (search_metadata_datetime)."

    def add_arguments(self, parser):
        parser.add_argument("--schema", action="append", help="only this tenant (repeatable); default: every one")

    def handle(self, *args, schema, **options):
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
        if schema:
            tenants = tenants.filter(schema_name__in=schema)
        for tenant in tenants.order_by("schema_name"):
            with tenant_scope(tenant.schema_name):
                paths = sorted(set(FieldCatalogEntry.objects.using(WRITER).filter(
                    field_type=FieldCatalogEntry.FieldType.DATETIME).values_list("path", flat=True)))
                with connections[WRITER].cursor() as cursor:
                    for path in paths:
                        for statement in metadata_datetime_indexes(tuple(path.split("."))):
                            cursor.execute(statement.sql, statement.params)
                    if paths:  # statistics on the new expressions, for the planner's row estimates
                        cursor.execute("ANALYZE datasets_datarow")
            self.stdout.write(f"{tenant.schema_name}: {len(paths)} datetime path(s) indexed")
