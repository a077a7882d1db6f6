"""The label attribute catalog through the ontology API: imports infer it, an editor declares or redeclares an
attribute, bad declarations are 400s naming the field."""

import pytest

from tests.conftest import TENANT_A

pytestmark = pytest.mark.django_db


@pytest.fixture
def project_url(make_token, api_client):
    client = api_client(make_token(TENANT_A))
    project = client.post("/api/v1/projects/", {"name": "Attributes"}, format="json").json()
    return client, f"/api/v1/projects/{project['id']}/ontology/attributes"


def test_an_editor_declares_attributes_and_lists_them_by_name(project_url):
    client, url = project_url
    # when
    occluded = client.post(url, {"name": "occluded", "value_type": "boolean"}, format="json")
    side = client.post(
        url, {"name": "side", "value_type": "enum", "enum_values": ["left", "right", "left"]}, format="json"
    )
    # then
    assert occluded.status_code == 200, occluded.content
    assert side.json()["enum_values"] == ["left", "right"] and side.json()["declared"] is True
    listed = client.get(url).json()["results"]
    assert [(item["name"], item["value_type"]) for item in listed] == [("occluded", "boolean"), ("side", "enum")]


def test_a_declaration_replaces_what_was_there(project_url):
    client, url = project_url
    client.post(url, {"name": "side", "value_type": "enum", "enum_values": ["left"]}, format="json")
    redeclared = client.post(url, {"name": "side", "value_type": "number"}, format="json").json()
    assert (redeclared["value_type"], redeclared["enum_values"]) == ("number", [])
    assert len(client.get(url).json()["results"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "value_type": "text"}, "value_type"),
        ({"name": "x", "value_type": "enum"}, "enum_values"),
        ({"name": "x", "value_type": "boolean", "enum_values": ["a"]}, "enum_values"),
        ({"name": "x", "value_type": "enum", "enum_values": [f"v{i}" for i in range(101)]}, "enum_values"),
        ({"name": "", "value_type": "number"}, "name"),
        ({"name": "x" * 201, "value_type": "number"}, "name"),
        ({"name": "x", "value_type": "number", "extra": 1}, "extra"),
    ],
)
def test_a_bad_declaration_is_a_400_naming_the_field(project_url, body, field):
    client, url = project_url
    response = client.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["extra"]["fields"]
    assert client.get(url).json()["results"] == []


def test_a_viewer_cannot_declare(make_token, api_client, project_url):
    _, url = project_url
    viewer = api_client(make_token(TENANT_A, role="viewer"))
    assert viewer.post(url, {"name": "x", "value_type": "number"}, format="json").status_code == 403
    assert viewer.get(url).status_code == 200
