import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tenancy.models import Tenant

pytestmark = pytest.mark.django_db

PROVISION = "/api/v1/platform/tenants"


def _schema_tables(schema: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
        return {row[0] for row in cursor.fetchall()}


def test_platform_provisions_a_tenant_with_its_service_key(api_client, make_token, settings):
    client = api_client(settings.PLATFORM_SERVICE_KEY)
    response = client.post(PROVISION, {"schema_name": "initech", "name": "Initech"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "active"
    assert "projects_project" in _schema_tables("initech")
    # and its users can work right away
    created = api_client(make_token("initech")).post("/api/v1/projects/", {"name": "first"}, format="json")
    assert created.status_code == 201


def test_provisioning_needs_the_service_key(api_client, make_token):
    assert api_client().post(PROVISION, {"schema_name": "x1", "name": "X"}, format="json").status_code == 401
    user_token = api_client(make_token(role="admin"))
    assert user_token.post(PROVISION, {"schema_name": "x1", "name": "X"}, format="json").status_code == 401
    assert not Tenant.objects.filter(schema_name="x1").exists()


@pytest.mark.parametrize("schema_name", ["Upper", "pg_catalog", "public", "a;drop", "1abc", "x"])
def test_invalid_schema_names_are_400_naming_the_field(api_client, settings, schema_name):
    response = api_client(settings.PLATFORM_SERVICE_KEY).post(
        PROVISION, {"schema_name": schema_name, "name": "X"}, format="json"
    )
    assert response.status_code == 400
    assert "schema_name" in response.json()["extra"]["fields"]


def test_provisioning_an_existing_tenant_is_409(api_client, settings):
    response = api_client(settings.PLATFORM_SERVICE_KEY).post(
        PROVISION, {"schema_name": "acme", "name": "Acme"}, format="json"
    )
    assert response.status_code == 409


def test_management_command_creates_and_is_idempotent_with_if_missing(capsys):
    call_command("tenant_create", "--schema", "hooli", "--name", "Hooli")
    call_command("tenant_create", "--schema", "hooli", "--name", "Hooli", "--if-missing")
    with pytest.raises(CommandError, match="already exists"):
        call_command("tenant_create", "--schema", "hooli", "--name", "Hooli")
    assert Tenant.objects.get(schema_name="hooli").status == Tenant.Status.ACTIVE
    assert "projects_project" in _schema_tables("hooli")


def test_a_half_provisioned_tenant_is_finished_by_a_rerun():
    Tenant.objects.create(schema_name="resumed", name="Resumed")
    call_command("tenant_create", "--schema", "resumed", "--name", "Resumed")
    assert Tenant.objects.get(schema_name="resumed").status == Tenant.Status.ACTIVE
    assert "projects_project" in _schema_tables("resumed")
