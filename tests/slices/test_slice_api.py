"""The slices REST API: create every kind, list, get, rename, delete, members by keyset pages, combine, split."""

import pytest

from datasets.models import FieldCatalogEntry
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import datarows_make, dataset_make, job_make, project_make, slice_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(make_token, api_client):
    """An editor's client, the project's slices URL and the ids of its six datarows (metadata.i = 0..5)."""
    client = api_client(make_token(TENANT_A))
    with tenant_scope(TENANT_A):
        project = project_make()
        dataset = dataset_make(project=project)
        rows = datarows_make(dataset=dataset, count=6, metadata=lambda i: {"i": i})
        FieldCatalogEntry.objects.create(project=project, path="i", field_type="number")
    return client, f"/api/v1/projects/{project.pk}/slices/", [row.pk for row in rows], dataset.pk


def walk(client, url: str, **params) -> tuple[list[dict], list[int]]:
    """Every member through the pages (two per page), and the counts each page gave."""
    results, counts, cursor = [], [], None
    while True:
        query = {"page_size": 2, **params, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, query)
        assert page.status_code == 200, page.content
        results += page.json()["results"]
        counts.append(page.json()["count"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return results, counts


def test_create_list_get_rename_delete(api):
    client, url, ids, dataset_id = api
    live = client.post(url, {"name": "big", "kind": "query", "query": "metadata.i >= 3"}, format="json")
    assert live.status_code == 201, live.content
    assert (live.json()["kind"], live.json()["member_count"], live.json()["status"]) == ("query", 3, "ready")
    picked = client.post(url, {"name": "picked", "kind": "ids", "datarow_ids": [ids[0], ids[4]]}, format="json")
    assert (picked.status_code, picked.json()["member_count"]) == (201, 2)
    frozen = client.post(
        url, {"name": "small", "kind": "frozen", "query": "metadata.i < 2", "dataset": dataset_id}, format="json"
    )
    assert frozen.status_code == 201, frozen.content
    assert (frozen.json()["member_count"], frozen.json()["dataset_id"]) == (2, dataset_id)
    assert frozen.json()["frozen_at"] is not None

    listed = client.get(url).json()["results"]
    assert [s["name"] for s in listed] == ["small", "picked", "big"]
    assert listed[2]["member_count"] is None  # a live slice is counted on its own page only

    detail = f"{url}{picked.json()['id']}"
    renamed = client.patch(detail, {"name": "chosen", "description": "two rows"}, format="json")
    assert (renamed.json()["name"], renamed.json()["description"]) == ("chosen", "two rows")
    assert client.get(detail).json()["name"] == "chosen"
    assert client.delete(detail).status_code == 204
    assert client.get(detail).status_code == 404


def test_members_are_paged_by_id_and_counted(api):
    client, url, ids, _ = api
    live = client.post(url, {"name": "live", "kind": "query", "query": "metadata.i != 2"}, format="json").json()
    results, counts = walk(client, f"{url}{live['id']}/members")
    assert [r["id"] for r in results] == [i for n, i in enumerate(ids) if n != 2]
    assert counts == [5, 5, 5] and results[0]["split"] is None and results[0]["external_id"] == "r0"

    picked = client.post(url, {"name": "p", "kind": "ids", "datarow_ids": ids}, format="json").json()
    split = client.post(
        f"{url}{picked['id']}/split", {"seed": 5, "fractions": {"train": 0.5, "validation": 0.5}}, format="json"
    )
    assert split.status_code == 200, split.content
    assert split.json()["split"] == {
        "seed": 5,
        "fractions": {"train": 0.5, "validation": 0.5, "test": 0.0},
        "stratified": False,
        "counts": {"train": 3, "validation": 3, "test": 0},
    }
    train, counts = walk(client, f"{url}{picked['id']}/members", split="train")
    assert len(train) == 3 and counts == [3, 3] and {r["split"] for r in train} == {"train"}
    assert client.get(f"{url}{picked['id']}/members", {"split": "test"}).json() == {
        "results": [],
        "next_cursor": None,
        "count": 0,
    }


def test_combine(api):
    client, url, ids, _ = api
    low = client.post(url, {"name": "low", "kind": "query", "query": "metadata.i < 4"}, format="json").json()
    picked = client.post(url, {"name": "p", "kind": "ids", "datarow_ids": [ids[1], ids[5]]}, format="json").json()
    combined = client.post(
        f"{url}combine",
        {"name": "low but not picked", "operation": "difference", "slices": [low["id"], picked["id"]]},
        format="json",
    )
    assert combined.status_code == 201, combined.content
    assert (combined.json()["kind"], combined.json()["member_count"]) == ("frozen", 3)
    assert combined.json()["description"] == "difference of 'low', 'p'"
    results, _ = walk(client, f"{url}{combined.json()['id']}/members")
    assert [r["id"] for r in results] == [ids[0], ids[2], ids[3]]
    missing = client.post(
        f"{url}combine", {"name": "x", "operation": "union", "slices": [low["id"], 999999]}, format="json"
    )
    assert missing.status_code == 400 and "999999" in missing.json()["extra"]["fields"]["slices"][0]
    past_bigint = client.post(
        f"{url}combine", {"name": "x", "operation": "union", "slices": [low["id"], 2**63]}, format="json"
    )
    assert past_bigint.status_code == 400 and "slices" in past_bigint.json()["extra"]["fields"]


def test_in_slice_through_a_slice_query(api):
    client, url, ids, _ = api
    client.post(url, {"name": "p", "kind": "ids", "datarow_ids": [ids[0], ids[3]]}, format="json")
    live = client.post(
        url, {"name": "p or high", "kind": "query", "query": "IN SLICE 'p' OR metadata.i = 5"}, format="json"
    )
    assert live.status_code == 201, live.content
    results, _ = walk(client, f"{url}{live.json()['id']}/members")
    assert [r["id"] for r in results] == [ids[0], ids[3], ids[5]]


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({"name": "x", "kind": "ids"}, 400, "datarow_ids"),
        ({"name": "x", "kind": "ids", "datarow_ids": [1], "query": "width > 1"}, 400, "query"),
        ({"name": "x", "kind": "query", "datarow_ids": [1]}, 400, "datarow_ids"),
        ({"name": "x", "kind": "weird"}, 400, "kind"),
        # ids past bigint: 400s naming the field, not errors from SQL
        ({"name": "x", "kind": "ids", "datarow_ids": [2**63]}, 400, "datarow_ids"),
        ({"name": "x", "kind": "frozen", "query": "", "dataset": 2**63}, 400, "dataset"),
        ({"name": "x", "kind": "frozen", "query": "metadata.i = 1", "dataset": 999999}, 400, "dataset"),
    ],
)
def test_bad_creations_say_what_and_where(api, body, status, where):
    client, url, _, _ = api
    response = client.post(url, body, format="json")
    assert response.status_code == status, response.content
    if where:
        assert where in response.json()["extra"]["fields"]


def test_unknown_ids_and_slice_names_and_bad_queries_are_400s_naming_them(api):
    client, url, ids, _ = api
    unknown = client.post(url, {"name": "x", "kind": "ids", "datarow_ids": [ids[0], 987654321]}, format="json")
    assert unknown.status_code == 400 and unknown.json()["extra"]["unknown_ids"] == [987654321]
    client.post(url, {"name": "hard cases", "kind": "query", "query": ""}, format="json")
    bad_name = client.post(url, {"name": "y", "kind": "frozen", "query": "IN SLICE 'hard case'"}, format="json")
    assert bad_name.status_code == 400
    assert bad_name.json()["extra"]["suggestions"] == ["hard cases"]
    assert (bad_name.json()["extra"]["line"], bad_name.json()["extra"]["column"]) == (1, 10)
    bad_query = client.post(url, {"name": "z", "kind": "query", "query": "metadata.i >"}, format="json")
    assert bad_query.status_code == 400 and "caret" in bad_query.json()["extra"]
    duplicate = client.post(url, {"name": "hard cases", "kind": "query", "query": ""}, format="json")
    assert duplicate.status_code == 409 and "name" in duplicate.json()["extra"]["fields"]


def test_split_errors(api):
    client, url, ids, _ = api
    live = client.post(url, {"name": "l", "kind": "query", "query": ""}, format="json").json()
    refused = client.post(f"{url}{live['id']}/split", {"seed": 1, "fractions": {"train": 1}}, format="json")
    assert refused.status_code == 400 and "freeze it" in refused.json()["message"]
    assert client.get(f"{url}{live['id']}/members", {"split": "train"}).status_code == 400
    picked = client.post(url, {"name": "p", "kind": "ids", "datarow_ids": ids}, format="json").json()
    bad = client.post(f"{url}{picked['id']}/split", {"seed": 1, "fractions": {"train": 0.5}}, format="json")
    assert bad.status_code == 400 and "fractions" in bad.json()["extra"]["fields"]
    assert client.get(f"{url}{picked['id']}/members", {"split": "holdout"}).status_code == 400


def test_viewers_read_but_cannot_change(api, make_token, api_client):
    client, url, ids, _ = api
    picked = client.post(url, {"name": "p", "kind": "ids", "datarow_ids": ids}, format="json").json()
    viewer = api_client(make_token(TENANT_A, role="viewer"))
    assert viewer.get(url).status_code == 200
    assert viewer.get(f"{url}{picked['id']}/members").json()["count"] == 6
    assert viewer.post(url, {"name": "v", "kind": "query"}, format="json").status_code == 403
    assert viewer.patch(f"{url}{picked['id']}", {"name": "v"}, format="json").status_code == 403
    assert viewer.delete(f"{url}{picked['id']}").status_code == 403
    assert (
        viewer.post(f"{url}{picked['id']}/split", {"seed": 1, "fractions": {"train": 1}}, format="json").status_code
        == 403
    )


def test_other_workspaces_and_tenants_see_nothing(api, make_token, api_client):
    client, url, ids, _ = api
    picked = client.post(url, {"name": "p", "kind": "ids", "datarow_ids": ids}, format="json").json()
    stranger = api_client(make_token(TENANT_A, workspace="ws-2"))
    missing = {"message": f"Project {picked['project_id']} does not exist.", "extra": {}}
    for response in (stranger.get(f"{url}{picked['id']}"), stranger.get(f"{url}{picked['id']}/members")):
        assert (response.status_code, response.json()) == (404, missing)


def test_a_large_freeze_answers_202_with_the_slice_and_its_job(
    api, monkeypatch, celery_eager, django_capture_on_commit_callbacks
):
    client, url, ids, _ = api
    monkeypatch.setattr("slices.services.FREEZE_IN_REQUEST_MAX", 2)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"name": "big", "kind": "frozen", "query": "metadata.i >= 1"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["slice"]["status"], body["slice"]["member_count"]) == ("freezing", None)
    assert (body["job"]["kind"], body["job"]["params"]) == ("slice-freeze", {"slice_id": body["slice"]["id"]})
    done = client.get(f"{url}{body['slice']['id']}").json()
    assert (done["status"], done["member_count"], done["freeze_job_id"]) == ("ready", 5, body["job"]["id"])
    assert client.get(f"/api/v1/jobs/{body['job']['id']}").json()["status"] == "succeeded"


def test_a_frozen_slice_whose_job_ended_without_filling_it_says_failed(api):
    """What a worker lost mid-freeze leaves: the reaper fails the job; the slice was never filled."""
    from jobs.models import Job
    from slices.models import Slice

    client, url, _, _ = api
    project_id = int(url.split("/")[4])
    with tenant_scope(TENANT_A):
        job = job_make(kind="slice-freeze", status=Job.Status.RUNNING)
        lost = slice_make(project=project_id, name="lost", kind=Slice.Kind.FROZEN, freeze_job=job)
    assert client.get(f"{url}{lost.pk}").json()["status"] == "freezing"
    with tenant_scope(TENANT_A):
        Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    assert client.get(f"{url}{lost.pk}").json()["status"] == "failed"
    assert client.delete(f"{url}{lost.pk}").status_code == 204
