"""The Elasticsearch engine and indexer against a fake Elasticsearch HTTP server (tests/search/fake_elasticsearch.py,
which answers searches with the DSL evaluator): documents and mapping as indexed, REST searches giving the
PostgreSQL engine's answers page for page, deleted rows dropped, the hand-off from writers, and the reindex with its
atomic alias swap."""

import pytest
from django.db import connection

from search.engines.elasticsearch_documents import alias_name, building_alias_name, datarow_document, index_mapping
from search.indexing import services
from search.indexing.documents import datarows_by_id
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.search.test_search_api import FACETS, QUERIES
from tests.search.test_sorting import SORTS

pytestmark = pytest.mark.django_db(databases=["default", "reader"])


@pytest.fixture
def client(search_data, make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.fixture
def indexed(search_data, on_elasticsearch):
    """Both datasets indexed as imports hand them over."""
    with tenant_scope(TENANT_A):
        for dataset_id in search_data.dataset_ids:
            services.index_dataset(
                tenant_schema=TENANT_A,
                project_id=search_data.project_id,
                dataset_id=dataset_id,
                since=None,
                using="default",
            )
    return on_elasticsearch


def _stored_documents(search_data) -> dict[str, dict]:
    with tenant_scope(TENANT_A):
        rows = datarows_by_id(
            project_id=search_data.project_id, datarow_ids=[r["id"] for r in search_data.rows], using="default"
        )
    return {str(row["id"]): datarow_document(row, search_data.catalog) for row in rows}


def _walk(client, project_id: int, body: dict) -> list[dict]:
    pages, cursor = [], None
    while True:
        response = client.post(
            f"/api/v1/projects/{project_id}/search", {**body, **({"cursor": cursor} if cursor else {})}, format="json"
        )
        assert response.status_code == 200, response.content
        pages.append(response.json())
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


def test_imported_datasets_are_indexed_behind_the_project_alias_with_the_catalog_mapping(search_data, indexed):
    alias = alias_name(TENANT_A, search_data.project_id)
    (index,) = indexed.resolve(alias)
    assert indexed.indices[index].mappings == index_mapping(search_data.catalog)
    assert indexed.documents(alias) == _stored_documents(search_data)
    assert len(indexed.requests_to("PUT", f"/{index}")) == 1  # created once, then only its mapping grows


@pytest.mark.parametrize("text", QUERIES)
def test_rest_search_answers_as_on_postgres_page_for_page(text, search_data, indexed, client, settings):
    bodies = [{"query": text, "page_size": 9, **sort} for sort in SORTS] + [
        {"query": text, "page_size": 9, **sort, "sort": "-" + sort["sort"]} for sort in SORTS
    ]
    bodies.append({"query": text, "page_size": 5, "facets": FACETS, "count": "estimate"})
    for body in bodies:
        settings.SEARCH_ENGINE = "postgres"
        on_postgres = _walk(client, search_data.project_id, body)
        settings.SEARCH_ENGINE = "elasticsearch"
        on_elasticsearch = _walk(client, search_data.project_id, body)
        assert [[row["id"] for row in page["results"]] for page in on_elasticsearch] == [
            [row["id"] for row in page["results"]] for page in on_postgres
        ], body
        assert on_elasticsearch[0]["results"] == on_postgres[0]["results"]
        assert on_elasticsearch[0]["total"] == on_postgres[0]["total"]
        if "facets" in body:
            assert on_elasticsearch[0]["facets"] == on_postgres[0]["facets"]


def test_totals_are_estimated_like_track_total_hits(search_data, indexed, client, monkeypatch):
    monkeypatch.setattr("search.selectors.ESTIMATE_CAP", 10)
    url = f"/api/v1/projects/{search_data.project_id}/search"
    estimate = client.post(url, {"count": "estimate", "page_size": 1}, format="json").json()["total"]
    exact = client.post(url, {"count": "exact", "page_size": 1}, format="json").json()["total"]
    assert estimate == {"value": 10, "relation": "gte"}
    assert exact == {"value": len(search_data.rows), "relation": "eq"}
    assert indexed.requests_to("POST", "/_search")[-2].body["track_total_hits"] == 10


def test_ids_deleted_meanwhile_are_dropped_from_the_page(search_data, indexed, client):
    # given: a row deleted in PostgreSQL that the index still holds (its delete not indexed yet)
    gone = search_data.rows[3]["id"]
    with connection.cursor() as cursor:
        cursor.execute(f"SET search_path TO {TENANT_A}, public")
        for table in ("predictions_prediction", "datasets_label"):
            cursor.execute(f"DELETE FROM {table} WHERE datarow_id = %s", [gone])
        cursor.execute("DELETE FROM datasets_datarow WHERE id = %s", [gone])
    # when
    ids = [row["id"] for page in _walk(client, search_data.project_id, {"page_size": 10}) for row in page["results"]]
    # then
    assert gone not in ids and len(ids) == len(search_data.rows) - 1


def test_an_empty_project_searches_before_anything_is_indexed(search_data, on_elasticsearch, client):
    body = client.post(f"/api/v1/projects/{search_data.project_id}/search", {"facets": ["tags"]}, format="json").json()
    assert body["results"] == [] and body["total"] == {"value": 0, "relation": "eq"} and body["facets"] == {"tags": []}


def test_writers_hand_changes_to_the_indexer_after_commit(
    search_data, indexed, celery_eager, django_capture_on_commit_callbacks
):
    from datasets.models import DataRow, Dataset
    from datasets.services.datarows import datarow_bulk_delete, datarow_tags_update
    from datasets.services.labels import label_create
    from tenancy.principal import Principal

    alias = alias_name(TENANT_A, search_data.project_id)
    first, second = search_data.rows[0], search_data.rows[1]
    with tenant_scope(TENANT_A):
        dataset = Dataset.objects.get(pk=first["dataset_id"])
        # when: tags change, a label is added, a row is deleted
        with django_capture_on_commit_callbacks(execute=True):
            datarow_tags_update(dataset=dataset, datarow_ids=[first["id"]], add=["es-added"], remove=[])
        with django_capture_on_commit_callbacks(execute=True):
            editor = Principal(
                user_id="auth0|editor",
                email="",
                tenant_schema=TENANT_A,
                workspace_id="ws-1",
                role="editor",
                database="main",
                expires_at=0,
            )
            label_create(principal=editor, datarow=DataRow.objects.get(pk=first["id"]), class_name="person")
        with django_capture_on_commit_callbacks(execute=True):
            datarow_bulk_delete(dataset=Dataset.objects.get(pk=second["dataset_id"]), datarow_ids=[second["id"]])
    # then
    document = indexed.documents(alias)[str(first["id"])]
    assert "es-added" in document["tags"]
    assert [label["class"] for label in document["labels"]].count("person") == [
        label["class"] for label in first["labels"]
    ].count("person") + 1
    assert str(second["id"]) not in indexed.documents(alias)


def test_the_hand_off_does_nothing_on_postgres(settings, django_capture_on_commit_callbacks):
    from search.indexing import datarows_changed, datarows_deleted, dataset_changed

    def never_read():
        raise AssertionError("the ids were read")
        yield

    settings.SEARCH_ENGINE = "postgres"
    with django_capture_on_commit_callbacks() as callbacks:
        datarows_changed(project_id=1, datarow_ids=never_read())
        datarows_deleted(project_id=1, datarow_ids=never_read())
        dataset_changed(project_id=1, dataset_id=1)
    assert callbacks == []


def test_bulk_errors_worth_retrying_are_told_apart_from_refusals(search_data, indexed):
    ids = [search_data.rows[0]["id"]]
    indexed.bulk_failures.append(503)
    with tenant_scope(TENANT_A), pytest.raises(services.SearchIndexUnavailable):
        services.index_datarows(
            tenant_schema=TENANT_A, project_id=search_data.project_id, datarow_ids=ids, using="default"
        )
    with pytest.raises(services.SearchIndexingFailed):
        services.bulk_write(
            services.client_for_tenant(TENANT_A), [{"index": {"_index": "no-such-index", "_id": "1"}}, {"id": 1}]
        )
    assert (
        services.bulk_write(
            services.client_for_tenant(TENANT_A),
            [{"delete": {"_index": indexed.resolve(alias_name(TENANT_A, search_data.project_id))[0], "_id": "999999"}}],
        )
        == 1
    )  # deleting what is not there is done


def test_reindex_builds_a_new_index_and_swaps_the_alias_at_once(search_data, indexed, settings):
    alias = alias_name(TENANT_A, search_data.project_id)
    (old,) = indexed.resolve(alias)
    changed = search_data.rows[-1]["id"]
    settings.SEARCH_INDEX_BATCH = 20
    seen = []

    def progress(done: int) -> None:
        # while the new index fills, searches still use the old one, and a change reaches both
        seen.append((done, indexed.resolve(alias), indexed.resolve(building_alias_name(alias))))
        if len(seen) == 1:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {TENANT_A}.datasets_datarow SET tags = '{{during-reindex}}' WHERE id = %s", [changed]
                )
            services.index_datarows(
                tenant_schema=TENANT_A, project_id=search_data.project_id, datarow_ids=[changed], using="default"
            )

    # when
    with tenant_scope(TENANT_A):
        result = services.reindex_project(
            tenant_schema=TENANT_A, project_id=search_data.project_id, using="default", progress=progress
        )
    # then
    new = result["index"]
    assert [s[0] for s in seen] == [20, 40, 60, 80] and all(s[1] == [old] and s[2] == [new] for s in seen)
    assert indexed.resolve(alias) == [new] and indexed.resolve(building_alias_name(alias)) == []
    assert old not in indexed.indices
    (swap,) = indexed.requests_to("POST", "/_aliases")
    assert swap.body["actions"] == [
        {"remove": {"index": old, "alias": alias}},
        {"add": {"index": new, "alias": alias}},
        {"remove": {"index": new, "alias": building_alias_name(alias)}},
    ]
    documents = indexed.documents(alias)
    assert documents[str(changed)]["tags"] == ["during-reindex"]  # the reindex's older read did not overwrite it
    expected = _stored_documents(search_data)
    assert documents == expected and result["indexed"] == len(expected)


def test_a_datarow_deleted_while_the_reindex_writes_its_batch_does_not_come_back(
    search_data, indexed, settings, monkeypatch
):
    alias = alias_name(TENANT_A, search_data.project_id)
    settings.SEARCH_INDEX_BATCH = 20
    victim = search_data.rows[3]["id"]  # in the first batch
    write = services.bulk_write
    deleted = []

    def write_after_a_delete(client, operations, **options):
        # given: the first batch was read; its victim is deleted, and the delete's own indexing (both indices, the
        # new one not holding it yet) runs before the reindex writes that batch
        if not deleted and any("create" in operation for operation in operations):
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {TENANT_A}.datasets_label WHERE datarow_id = %s", [victim])
                cursor.execute(f"DELETE FROM {TENANT_A}.predictions_prediction WHERE datarow_id = %s", [victim])
                cursor.execute(f"DELETE FROM {TENANT_A}.datasets_datarow WHERE id = %s", [victim])
            services.index_datarows(
                tenant_schema=TENANT_A, project_id=search_data.project_id, datarow_ids=[victim], using="default"
            )
            deleted.append(victim)
        return write(client, operations, **options)

    monkeypatch.setattr(services, "bulk_write", write_after_a_delete)
    # when
    with tenant_scope(TENANT_A):
        result = services.reindex_project(tenant_schema=TENANT_A, project_id=search_data.project_id, using="default")
    # then: the new index holds what the database holds, without the deleted datarow
    documents = indexed.documents(alias)
    assert deleted == [victim] and str(victim) not in documents
    expected = _stored_documents(search_data)
    assert str(victim) not in expected and documents == expected and result["indexed"] == len(expected)


def test_reindex_over_rest_is_a_job_one_at_a_time_for_writers_on_elasticsearch(
    search_data, on_elasticsearch, make_token, api_client, settings
):
    url = f"/api/v1/projects/{search_data.project_id}/search/reindex"
    editor = api_client(make_token(TENANT_A))
    # when
    started = editor.post(url)
    again = editor.post(url)
    # then
    assert started.status_code == 202 and started.json()["kind"] == "search-reindex"
    assert again.status_code == 409 and again.json()["extra"]["job_id"] == started.json()["id"]
    assert api_client(make_token(TENANT_A, role="viewer")).post(url).status_code == 403
    settings.SEARCH_ENGINE = "postgres"
    assert editor.post(url).status_code == 400


def test_both_engines_stream_every_matching_id_in_batches(search_data, indexed):
    from search.engines import reference
    from search.engines.base import get_engine
    from search.ql import parse, validate

    text = "metadata.weather != 'rain' OR label(class UNDER 'vehicle')"
    query = validate(parse(text), catalog=search_data.catalog, text=text)
    expected = reference.datarow_ids(query, search_data.rows)
    with tenant_scope(TENANT_A):
        for name in ("postgres", "elasticsearch"):
            batches = list(
                get_engine(name).iter_matching_ids(
                    tenant_schema=TENANT_A,
                    project_id=search_data.project_id,
                    query=query,
                    batch_size=7,
                    using="default",
                )
            )
            assert [i for batch in batches for i in batch] == expected, name
            assert all(len(batch) == 7 for batch in batches[:-1]) and len(batches) == -(-len(expected) // 7)


def test_a_deleted_dataset_leaves_the_index_in_one_delete_by_query(
    search_data, indexed, celery_eager, django_capture_on_commit_callbacks
):
    from datasets.services.datasets import dataset_delete_rows

    alias = alias_name(TENANT_A, search_data.project_id)
    first, second = search_data.dataset_ids
    with tenant_scope(TENANT_A), django_capture_on_commit_callbacks(execute=True):
        dataset_delete_rows(dataset_id=second, progress=lambda deleted: None)
    assert {d["dataset_id"] for d in indexed.documents(alias).values()} == {first}
    (request,) = indexed.requests_to("POST", "/_delete_by_query")
    assert request.body["query"] == {"term": {"dataset_id": second}}


def test_a_tenant_on_another_cluster_uses_that_clusters_elasticsearch(search_data, on_elasticsearch, settings):
    from search.engines.elasticsearch_engine import elasticsearch_url

    settings.ELASTICSEARCH_URL = "http://default-cluster.invalid:9200"
    assert elasticsearch_url(TENANT_A) == "http://default-cluster.invalid:9200"
    settings.ELASTICSEARCH_CLUSTER_URLS = {"main": on_elasticsearch.url}  # tenant A's record names cluster "main"
    assert elasticsearch_url(TENANT_A) == on_elasticsearch.url


def test_a_freeze_on_elasticsearch_copies_the_engines_ids_and_indexes_the_members(
    search_data, indexed, settings, celery_eager, django_capture_on_commit_callbacks
):
    from projects.models import Project
    from slices.models import SliceMember
    from slices.services import slice_freeze_start
    from tenancy.principal import Principal

    creator = Principal(
        user_id="auth0|editor",
        email="",
        tenant_schema=TENANT_A,
        workspace_id="ws-1",
        role="editor",
        database="main",
        expires_at=0,
    )
    text = "label(class UNDER 'vehicle') AND NOT IN SLICE 'picked'"
    alias = alias_name(TENANT_A, search_data.project_id)
    members = {}
    with tenant_scope(TENANT_A):
        project = Project.objects.get(pk=search_data.project_id)
        for engine in ("postgres", "elasticsearch"):
            settings.SEARCH_ENGINE = engine
            with django_capture_on_commit_callbacks(execute=True):
                frozen = slice_freeze_start(
                    principal=creator, project=project, name=f"vehicles on {engine}", query=text
                ).slice
            members[engine] = set(SliceMember.objects.filter(slice=frozen).values_list("datarow_id", flat=True))
            assert frozen.member_count == len(members[engine])
    assert members["elasticsearch"] == members["postgres"] and members["postgres"]
    # then: the members' documents carry the new slice, so IN SLICE finds them on Elasticsearch
    documents = indexed.documents(alias)
    assert {int(key) for key, document in documents.items() if frozen.pk in document["slice_ids"]} == members[
        "elasticsearch"
    ]
