import jwt
import pytest
from django.core.management import CommandError, call_command

from tenancy.dev_auth import CLAIM_NAMESPACE, DEV_KID, _private_key, issue_dev_token
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


@pytest.mark.parametrize("claim", ["role", "workspace", "tenant"])
def test_dev_token_without_a_claim_is_a_401_naming_it(settings, api_client, tmp_path, claim):
    # given a development token someone made by hand, without one of the claims the dev platform reads
    settings.DEV_AUTH = True
    settings.DEV_JWT_KEY_PATH = tmp_path / "dev-key.pem"
    token = issue_dev_token(tenant=TENANT_A, user="dev@example.com")
    claims = jwt.decode(token, options={"verify_signature": False})
    del claims[CLAIM_NAMESPACE + claim]
    token = jwt.encode(claims, _private_key(), algorithm="RS256", headers={"kid": DEV_KID})
    # when it is used
    response = api_client(token).get("/api/v1/projects/")
    # then it is refused as a bad token, saying which claim is missing
    assert response.status_code == 401, response.content
    assert claim in response.json()["message"]
    assert response.json()["extra"]["missing_claims"] == [CLAIM_NAMESPACE + claim]
