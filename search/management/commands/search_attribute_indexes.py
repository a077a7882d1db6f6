"""Create the typed indexes of the label attributes in the tenants' attribute catalogs, so that same-object
conditions on them (`label(class = 'person' AND attributes.occluded = true)`) are index scans.

A command, as for metadata paths (search_metadata_indexes): each index is built over every label of the tenant,
minutes at millions of labels, and each costs every later import an index insertion per label holding the
attribute, so which attributes to index is an operator's decision. CREATE INDEX CONCURRENTLY does not block writes,
and an index already there is left alone, so it can run again after imports bring new attributes; attributes that
never appear in a condition can be left out with --attribute.
"""

from django.core.management.base import BaseCommand
from django.db import connections

from datasets.models import ObjectAttribute
from mlops import tables
from mlops.db_routing import WRITER
from search.engines.postgres_indexes import attribute_indexes
from tenancy.context import tenant_scope
from tenancy.models import Tenant


class Command(BaseCommand):
    help = "Index the label attributes of the tenants' attribute catalogs by their typed values (search_attribute_*)."

    def add_arguments(self, parser):
        parser.add_argument("--schema", action="append", help="only this tenant (repeatable); default: every one")
        parser.add_argument(
            "--attribute", action="append", metavar="NAME", help="only this attribute (repeatable); default: every one"
        )

    def handle(self, *args, schema, attribute, **options):
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
        if schema:
            tenants = tenants.filter(schema_name__in=schema)
        for tenant in tenants.order_by("schema_name"):
            with tenant_scope(tenant.schema_name):
                catalog = ObjectAttribute.objects.using(WRITER)
                if attribute:
                    catalog = catalog.filter(name__in=attribute)
                entries = sorted(set(catalog.values_list("value_type", "name")))
                with connections[WRITER].cursor() as cursor:
                    for value_type, name in entries:
                        for statement in attribute_indexes(value_type, name):
                            cursor.execute(statement.sql, statement.params)
                    if entries:  # statistics on the new expressions, for the planner's row estimates
                        cursor.execute(f"ANALYZE {tables.LABEL}")
            self.stdout.write(f"{tenant.schema_name}: {len(entries)} label attribute(s) indexed")
