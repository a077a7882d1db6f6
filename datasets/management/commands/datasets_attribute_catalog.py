"""Fill the projects' attribute catalogs from the labels already stored (imports keep them current afterwards): the
backfill after the catalog was introduced (datasets/migrations/0008), run before `manage.py search_attribute_indexes`.
Idempotent; one scan of each project's labels."""

from django.core.management.base import BaseCommand

from datasets.services.ontology import object_attributes_learn
from mlops.db_routing import WRITER
from projects.models import Project
from tenancy.context import tenant_scope
from tenancy.models import Tenant


class Command(BaseCommand):
    help = "Catalog the label attributes of every project from its stored labels (boolean, number or enum)."

    def add_arguments(self, parser):
        parser.add_argument("--schema", action="append", help="only this tenant (repeatable); default: every one")

    def handle(self, *args, schema, **options):
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
        if schema:
            tenants = tenants.filter(schema_name__in=schema)
        for tenant in tenants.order_by("schema_name"):
            with tenant_scope(tenant.schema_name):
                project_ids = list(Project.objects.using(WRITER).order_by("id").values_list("id", flat=True))
                for project_id in project_ids:
                    object_attributes_learn(project_id=project_id)
            self.stdout.write(f"{tenant.schema_name}: attributes of {len(project_ids)} project(s) catalogued")
