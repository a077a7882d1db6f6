from django.core.management.base import BaseCommand, CommandError

from mlops.exceptions import ApplicationError
from tenancy.services import tenant_provision


class Command(BaseCommand):
    help = "Provision a tenant: create its schema and run every tenant migration."

    def add_arguments(self, parser):
        parser.add_argument("--schema", required=True, help="schema name, e.g. acme")
        parser.add_argument("--name", required=True, help="display name")
        parser.add_argument("--database", default="main", help="database cluster that holds the schema")
        parser.add_argument("--if-missing", action="store_true", help="succeed quietly if it already exists")

    def handle(self, *args, schema, name, database, if_missing, **options):
        try:
            tenant = tenant_provision(schema_name=schema, name=name, database=database, if_missing=if_missing)
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(f"tenant {tenant.schema_name} is {tenant.status}")
