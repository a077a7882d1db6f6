import pytest

from tests.conftest import TENANT_A

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


def test_project_crud_round_trip(make_token, api_client):
    client = api_client(make_token())
    project = client.post("/api/v1/projects/", {"name": "Drones"}, format="json").json()
    renamed = client.patch(
        f"/api/v1/projects/{project['id']}", {"name": "Drones v2", "description": "aerial"}, format="json"
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Drones v2"
    assert renamed.json()["description"] == "aerial"
    assert client.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    gone = client.get(f"/api/v1/projects/{project['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"message": f"Project {project['id']} does not exist.", "extra": {}}


def test_invalid_input_names_the_field(make_token, api_client):
    response = api_client(make_token()).post("/api/v1/projects/", {"name": ""}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Validation error"
    assert "name" in body["extra"]["fields"]


def test_duplicate_name_in_workspace_is_409(make_token, api_client):
    client = api_client(make_token())
    assert client.post("/api/v1/projects/", {"name": "Same"}, format="json").status_code == 201
    response = client.post("/api/v1/projects/", {"name": "Same"}, format="json")
    assert response.status_code == 409
    assert "name" in response.json()["extra"]["fields"]


def test_list_is_keyset_paginated_newest_first_without_gaps(make_token, api_client):
    client = api_client(make_token(workspace="ws-paging"))
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        client.post("/api/v1/projects/", {"name": name}, format="json")
    seen, query = [], {"page_size": 3}
    while query:
        page = client.get("/api/v1/projects/", query).json()
        seen += [p["name"] for p in page["results"]]
        query = {"page_size": 3, "cursor": page["next_cursor"]} if page["next_cursor"] else None
    assert seen == list(reversed(names))


def test_openapi_schema_and_docs_are_served(api_client):
    schema = api_client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/projects/" in schema.json()["paths"]
    assert api_client().get("/api/docs/").status_code == 200


def test_healthz_needs_no_token(api_client):
    assert api_client().get("/healthz").json() == {"status": "ok"}


def test_a_project_with_datasets_is_not_deleted(make_token, api_client):
    client = api_client(make_token())
    project = client.post("/api/v1/projects/", {"name": "Busy"}, format="json").json()
    dataset = client.post(f"/api/v1/projects/{project['id']}/datasets/", {"name": "d"}, format="json").json()
    response = client.delete(f"/api/v1/projects/{project['id']}")
    assert response.status_code == 409
    assert response.json()["extra"]["datasets"] == [dataset["id"]]
    assert client.get(f"/api/v1/projects/{project['id']}").status_code == 200
