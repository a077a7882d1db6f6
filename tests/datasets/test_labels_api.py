"""Label edits over REST: objects and classifications added, changed and deleted, checked like imports,
recorded with who and when, and the dataset's label count kept exact."""

import jwt
import pytest

from datasets.models import Dataset, Label
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B
from tests.datasets.conftest import wait_for_reader

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "reader"])


@pytest.fixture
def datarow(tenant_dataset, import_records):
    """A 640x480 datarow with one imported label; the ontology has vehicle/car and daytime."""
    import_records(
        [
            {
                "external_id": "img-1",
                "uri": "s3://b/1.jpg",
                "width": 640,
                "height": 480,
                "labels": [{"class": "vehicle/car", "box": [1, 1, 10, 10]}, {"class": "daytime"}],
            }
        ]
    )
    with tenant_scope(TENANT_A):
        return tenant_dataset.datarows.get()


def _labels_url(datarow, label_id: int | None = None) -> str:
    base = f"/api/v1/projects/{datarow.dataset.project_id}/datasets/{datarow.dataset_id}/datarows/{datarow.pk}/labels"
    return base if label_id is None else f"{base}/{label_id}"


def _user_of(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sub"]


def _label_count(datarow) -> tuple[int, int]:
    """(the dataset's counter, the labels actually there)."""
    with tenant_scope(TENANT_A):
        return (
            Dataset.objects.get(pk=datarow.dataset_id).label_count,
            Label.objects.filter(datarow__dataset_id=datarow.dataset_id).count(),
        )


def test_add_an_object_and_a_classification_recording_who(datarow, make_token, api_client):
    # given
    token = make_token(TENANT_A)
    client = api_client(token)
    # when
    box = client.post(
        _labels_url(datarow),
        {"class": "vehicle/car", "box": [100, 50, 200, 100], "attributes": {"occluded": False}},
        format="json",
    )
    classification = client.post(_labels_url(datarow), {"class": "daytime"}, format="json")
    polygon = client.post(
        _labels_url(datarow), {"class": "vehicle/car", "polygon": [[0, 0], [20, 0], [20, 10], [0, 10]]}, format="json"
    )
    # then
    assert box.status_code == classification.status_code == polygon.status_code == 201, box.content
    assert (box.json()["kind"], box.json()["box"], box.json()["area"]) == ("box", [100, 50, 200, 100], 20000)
    assert box.json()["attributes"] == {"occluded": False}
    assert (box.json()["source"], box.json()["updated_by"]) == (_user_of(token), _user_of(token))
    assert box.json()["updated_at"]
    assert (classification.json()["kind"], classification.json()["box"]) == ("classification", None)
    assert (polygon.json()["kind"], polygon.json()["box"], polygon.json()["area"]) == ("polygon", [0, 0, 20, 10], 200)
    assert _label_count(datarow) == (5, 5)
    # and the datarow shows them
    detail = client.get(
        f"/api/v1/projects/{datarow.dataset.project_id}/datasets/{datarow.dataset_id}/datarows/{datarow.pk}"
    ).json()
    assert box.json() in detail["labels"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"class": "unicorn"}, "class", "not in the project's ontology"),
        ({"class": "vehicle"}, None, None),  # a parent class the import created is a class too
        ({"class": "vehicle/car", "box": [600, 10, 100, 10]}, "box", "right edge"),
        ({"class": "vehicle/car", "box": [10, 470, 10, 20]}, "box", "bottom edge"),
        ({"class": "vehicle/car", "box": [10, 10, 0, 5]}, "box", "positive width"),
        ({"class": "vehicle/car", "box": [10, 10, 5]}, "box", "length"),
        ({"class": "vehicle/car", "box": [-1, 10, 5, 5]}, "box[0]", ">= 0"),
        ({"class": "vehicle/car", "polygon": [[0, 0], [1, 1]]}, "polygon", "length"),
        ({"class": "vehicle/car", "polygon": [[0, 0], [700, 0], [0, 5]]}, "polygon", "right edge"),
        ({"class": "daytime", "attributes": ["not", "an", "object"]}, "attributes", "object"),
        ({"class": "daytime", "attributes": {"note": "nul\u0000"}}, "attributes", "NUL"),
        ({}, "class", "required"),
    ],
)
def test_bad_labels_are_400_naming_the_field(datarow, make_token, api_client, body, field, reason):
    response = api_client(make_token(TENANT_A)).post(_labels_url(datarow), body, format="json")
    if field is None:
        assert response.status_code == 201, response.content
        return
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"message", "extra"}
    assert field in response.json()["extra"]["fields"], response.json()
    assert reason in " ".join(response.json()["extra"]["fields"][field]) + response.json()["message"]
    assert _label_count(datarow) == (2, 2)


def test_change_class_geometry_and_attributes_recording_who_and_when(datarow, make_token, api_client):
    # given
    creator = api_client(make_token(TENANT_A))
    created = creator.post(_labels_url(datarow), {"class": "vehicle/car", "box": [1, 2, 3, 4]}, format="json").json()
    editor_token = make_token(TENANT_A)
    editor = api_client(editor_token)
    wait_for_reader()  # the editor is another user: nothing pins their reads to the writer
    # when
    moved = editor.patch(
        _labels_url(datarow, created["id"]), {"box": [10, 20, 30, 40], "attributes": {"a": 1}}, format="json"
    )
    reclassed = editor.patch(_labels_url(datarow, created["id"]), {"class": "daytime", "box": None}, format="json")
    # then
    assert moved.status_code == 200, moved.content
    assert (moved.json()["box"], moved.json()["area"], moved.json()["attributes"]) == ([10, 20, 30, 40], 1200, {"a": 1})
    assert moved.json()["updated_by"] == _user_of(editor_token) != moved.json()["source"]
    assert moved.json()["updated_at"] > created["updated_at"]
    assert reclassed.status_code == 200, reclassed.content
    assert (reclassed.json()["class"], reclassed.json()["kind"], reclassed.json()["box"]) == (
        "daytime",
        "classification",
        None,
    )
    assert reclassed.json()["attributes"] == {"a": 1}
    assert _label_count(datarow) == (3, 3)


def test_a_bad_change_is_400_and_changes_nothing(datarow, make_token, api_client):
    client = api_client(make_token(TENANT_A))
    created = client.post(_labels_url(datarow), {"class": "vehicle/car", "box": [1, 2, 3, 4]}, format="json").json()
    response = client.patch(
        _labels_url(datarow, created["id"]), {"class": "unicorn", "box": [1, 2, 3, 4]}, format="json"
    )
    past_edge = client.patch(_labels_url(datarow, created["id"]), {"box": [630, 2, 30, 4]}, format="json")
    assert response.status_code == past_edge.status_code == 400
    assert "class" in response.json()["extra"]["fields"] and "box" in past_edge.json()["extra"]["fields"]
    with tenant_scope(TENANT_A):
        label = Label.objects.select_related("ontology_class").get(pk=created["id"])
    assert (label.ontology_class.name, label.x, label.w) == ("vehicle/car", 1, 3)


def test_delete_a_label_and_the_count_follows(datarow, make_token, api_client):
    client = api_client(make_token(TENANT_A))
    with tenant_scope(TENANT_A):
        label_id = Label.objects.filter(datarow=datarow, kind="classification").get().pk
    deleted = client.delete(_labels_url(datarow, label_id))
    again = client.delete(_labels_url(datarow, label_id))
    assert deleted.status_code == 204
    assert (
        again.status_code == 404
        and again.json()["message"] == f"Label {label_id} does not exist on datarow {datarow.pk}."
    )
    assert _label_count(datarow) == (1, 1)


def test_a_label_of_another_datarow_is_not_found_through_this_one(
    datarow, tenant_dataset, import_records, make_token, api_client
):
    import_records([{"external_id": "img-2", "uri": "s3://b/2.jpg", "labels": [{"class": "daytime"}]}])
    with tenant_scope(TENANT_A):
        other_label = Label.objects.get(datarow__external_id="img-2", datarow__dataset=tenant_dataset)
    client = api_client(make_token(TENANT_A))
    assert client.patch(_labels_url(datarow, other_label.pk), {"class": "vehicle"}, format="json").status_code == 404
    assert client.delete(_labels_url(datarow, other_label.pk)).status_code == 404
    assert _label_count(datarow) == (3, 3)


def test_viewer_cannot_edit_labels(datarow, make_token, api_client):
    client = api_client(make_token(TENANT_A, role="viewer"))
    response = client.post(_labels_url(datarow), {"class": "daytime"}, format="json")
    assert response.status_code == 403 and "read-only" in response.json()["message"]
    assert _label_count(datarow) == (2, 2)


def test_another_tenant_cannot_edit_labels_by_id(datarow, make_token, api_client):
    with tenant_scope(TENANT_A):
        label_id = Label.objects.filter(datarow=datarow).first().pk
    client = api_client(make_token(TENANT_B, workspace="ws-globex"))
    responses = [
        client.post(_labels_url(datarow), {"class": "daytime"}, format="json"),
        client.patch(_labels_url(datarow, label_id), {"class": "daytime"}, format="json"),
        client.delete(_labels_url(datarow, label_id)),
    ]
    missing = {"message": f"Project {datarow.dataset.project_id} does not exist.", "extra": {}}
    assert [(response.status_code, response.json()) for response in responses] == [(404, missing)] * 3
    assert _label_count(datarow) == (2, 2)


def test_class_is_the_field_of_a_label_as_in_the_import_manifest(datarow, make_token, api_client):
    # given
    client = api_client(make_token(role="editor"))
    created = client.post(_labels_url(datarow), {"class": "vehicle/car", "box": [1, 2, 3, 4]}, format="json")
    assert created.status_code == 201 and created.json()["class"] == "vehicle/car"
    # when: `class` changes the class (it used to be ignored, with a 200); `class_name` is no field
    changed = client.patch(_labels_url(datarow, created.json()["id"]), {"class": "daytime"}, format="json")
    old_name = client.patch(_labels_url(datarow, created.json()["id"]), {"class_name": "vehicle"}, format="json")
    # then
    assert changed.status_code == 200 and changed.json()["class"] == "daytime"
    assert old_name.status_code == 400 and list(old_name.json()["extra"]["fields"]) == ["class_name"]
    stored = client.get(_labels_url(datarow).removesuffix("/labels")).json()["labels"]
    assert [label["class"] for label in stored if label["id"] == created.json()["id"]] == ["daytime"]
