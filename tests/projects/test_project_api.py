import pytest

from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db


def test_create_then_get_project_in_own_tenant(make_token, api_client):
    # given
    client = api_client(make_token(TENANT_A))
    # when
    created = client.post("/api/v1/projects/", {"name": "Traffic", "description": "cams"}, format="json")
    fetched = client.get(f"/api/v1/projects/{created.json()['id']}")
    # then
    assert created.status_code == 201, created.content
    assert fetched.status_code == 200
    assert fetched.json()["name"] == "Traffic"
