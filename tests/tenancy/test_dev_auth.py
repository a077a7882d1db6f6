import pytest
from django.core.management import CommandError, call_command

from tests.conftest import TENANT_A

pytestmark = pytest.mark.django_db


def test_issue_token_refuses_without_dev_auth(settings):
    settings.DEV_AUTH = False
    with pytest.raises(CommandError, match="MLOPS_DEV_AUTH"):
        call_command("issue_token", "--tenant", TENANT_A, "--user", "dev@example.com")


def test_dev_token_works_against_the_dev_platform(settings, api_client, capsys, tmp_path):
    settings.DEV_AUTH = True
    settings.DEV_JWT_KEY_PATH = tmp_path / "dev-key.pem"
    call_command("issue_token", "--tenant", TENANT_A, "--user", "dev@example.com", "--role", "editor")
    token = capsys.readouterr().out.strip()
    client = api_client(token)
    created = client.post("/api/v1/projects/", {"name": "from-dev-token"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["created_by"] == "dev@example.com"


def test_dev_token_for_an_unknown_tenant_is_not_active(settings, api_client, capsys, tmp_path):
    settings.DEV_AUTH = True
    settings.DEV_JWT_KEY_PATH = tmp_path / "dev-key.pem"
    call_command("issue_token", "--tenant", "ghost", "--user", "dev@example.com")
    response = api_client(capsys.readouterr().out.strip()).get("/api/v1/projects/")
    assert response.status_code == 401
