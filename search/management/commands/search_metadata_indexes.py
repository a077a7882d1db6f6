"""Create the indexes that make datetime conditions, and MATCH on chosen text paths, index scans, per tenant.

A command rather than a side effect of imports: building an index over millions of rows takes minutes and is an
operator's decision (a path may be in the catalog of one small project only; a full-text index per path costs
every import a GIN insertion per datarow, so text paths are named: `--text caption`); CREATE INDEX CONCURRENTLY
does not block writes, and an index already there is left alone, so it can run again after imports bring new paths.
"""

from django.core.management.base import BaseCommand
from django.db import connections

from datasets.models import FieldCatalogEntry
from mlops import tables
from mlops.db_routing import WRITER
from search.engines.postgres_indexes import metadata_path_indexes
from tenancy.context import tenant_scope
from tenancy.models import Tenant


class Command(BaseCommand):
    help = (
        "Index every datetime metadata path of the tenants' field catalogs (search_metadata_datetime), and the "
        "string paths named by --text for MATCH (search_metadata_string)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--schema", action="append", help="only this tenant (repeatable); default: every one")
        parser.add_argument(
            "--text",
            action="append",
            default=[],
            metavar="PATH",
            help="a string metadata path (without 'metadata.') to index for MATCH (repeatable); "
            "a tenant whose catalog does not hold it as a string is left alone",
        )

    def handle(self, *args, schema, text, **options):
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
        if schema:
            tenants = tenants.filter(schema_name__in=schema)
        for tenant in tenants.order_by("schema_name"):
            with tenant_scope(tenant.schema_name):
                catalog = FieldCatalogEntry.objects.using(WRITER)
                datetime_paths = sorted(
                    set(catalog.filter(field_type=FieldCatalogEntry.FieldType.DATETIME).values_list("path", flat=True))
                )
                text_paths = sorted(
                    set(
                        catalog.filter(field_type=FieldCatalogEntry.FieldType.STRING, path__in=text).values_list(
                            "path", flat=True
                        )
                    )
                )
                kinds = [("datetime", path) for path in datetime_paths] + [("match", path) for path in text_paths]
                with connections[WRITER].cursor() as cursor:
                    for kind, path in kinds:
                        for statement in metadata_path_indexes(kind, tuple(path.split("."))):
                            cursor.execute(statement.sql, statement.params)
                    if kinds:  # statistics on the new expressions, for the planner's row estimates
                        cursor.execute(f"ANALYZE {tables.DATAROW}")
            self.stdout.write(
                f"{tenant.schema_name}: {len(datetime_paths)} datetime path(s), {len(text_paths)} text path(s) indexed"
            )
