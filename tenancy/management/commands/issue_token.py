from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tenancy.dev_auth import issue_dev_token
from tenancy.principal import Role


class Command(BaseCommand):
    help = "Print a development token (only with MLOPS_DEV_AUTH=1, which production refuses)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--user", required=True)
        parser.add_argument("--role", default=Role.ADMIN, choices=sorted(Role.ALL))
        parser.add_argument("--workspace", default="default")
        parser.add_argument("--hours", type=int, default=12)

    def handle(self, *args, tenant, user, role, workspace, hours, **options):
        if not settings.DEV_AUTH:
            raise CommandError("issue_token needs the development issuer: set MLOPS_DEV_AUTH=1 (never in production).")
        self.stdout.write(
            issue_dev_token(tenant=tenant, user=user, role=role, workspace=workspace, lifetime_seconds=hours * 3600)
        )
