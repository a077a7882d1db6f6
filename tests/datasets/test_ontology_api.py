"""The project's ontology over REST: hierarchical classes listed by keyset pages and created with their parents."""

import uuid

import pytest

from datasets.models import OntologyClass
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B

pytestmark = pytest.mark.django_db


@pytest.fixture
def project_id(make_token, api_client) -> int:
    created = api_client(make_token(TENANT_A)).post(
        "/api/v1/projects/", {"name": f"p-{uuid.uuid4().hex[:8]}"}, format="json"
    )
    return created.json()["id"]


def _url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/ontology"


def test_creating_a_class_creates_its_missing_parents_linked_in_a_tree(project_id, make_token, api_client):
    # given
    client = api_client(make_token(TENANT_A))
    assert client.post(_url(project_id), {"name": "vehicle"}, format="json").status_code == 201
    # when
    created = client.post(_url(project_id), {"name": "vehicle/car/sedan"}, format="json")
    listed = client.get(_url(project_id)).json()["results"]
    # then
    assert created.status_code == 201, created.content
    assert (created.json()["name"], created.json()["parent_name"]) == ("vehicle/car/sedan", "vehicle/car")
    assert [(c["name"], c["parent_name"]) for c in listed] == [
        ("vehicle", None),
        ("vehicle/car", "vehicle"),
        ("vehicle/car/sedan", "vehicle/car"),
    ]
    with tenant_scope(TENANT_A):
        sedan = OntologyClass.objects.get(project_id=project_id, name="vehicle/car/sedan")
        assert sedan.parent.parent.name == "vehicle"


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("vehicle", 409, "already exists"),
        ("/vehicle", 400, "vehicle/car/sedan"),
        ("vehicle//car", 400, "vehicle/car/sedan"),
        ("", 400, "blank"),
        ("x" * 501, 400, "500 characters"),
    ],
)
def test_bad_or_existing_class_names_name_the_field(project_id, make_token, api_client, name, status, reason):
    client = api_client(make_token(TENANT_A))
    client.post(_url(project_id), {"name": "vehicle"}, format="json")
    response = client.post(_url(project_id), {"name": name}, format="json")
    assert response.status_code == status, response.content
    assert reason in " ".join(response.json()["extra"]["fields"]["name"]) + response.json()["message"]


def test_the_list_pages_by_cursor_in_name_order(project_id, make_token, api_client):
    client = api_client(make_token(TENANT_A))
    for name in ("b", "a/x", "c", "a"):
        client.post(_url(project_id), {"name": name}, format="json")
    first = client.get(_url(project_id), {"page_size": 2}).json()
    second = client.get(_url(project_id), {"page_size": 2, "cursor": first["next_cursor"]}).json()
    assert first["next_cursor"] and second["next_cursor"] is None
    assert [c["name"] for c in first["results"] + second["results"]] == ["a", "a/x", "b", "c"]


def test_viewer_lists_but_cannot_add_and_other_tenants_see_nothing(project_id, make_token, api_client):
    api_client(make_token(TENANT_A)).post(_url(project_id), {"name": "cat"}, format="json")
    viewer = api_client(make_token(TENANT_A, role="viewer"))
    assert [c["name"] for c in viewer.get(_url(project_id)).json()["results"]] == ["cat"]
    assert viewer.post(_url(project_id), {"name": "dog"}, format="json").status_code == 403
    other_tenant = api_client(make_token(TENANT_B, workspace="ws-globex"))
    missing = {"message": f"Project {project_id} does not exist.", "extra": {}}
    for response in (
        other_tenant.get(_url(project_id)),
        other_tenant.post(_url(project_id), {"name": "dog"}, format="json"),
    ):
        assert (response.status_code, response.json()) == (404, missing)
    with tenant_scope(TENANT_A):
        assert list(OntologyClass.objects.filter(project_id=project_id).values_list("name", flat=True)) == ["cat"]
