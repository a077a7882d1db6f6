"""The query-equivalence checks against a real Elasticsearch server: skipped unless ELASTICSEARCH_URL is set
(docker compose starts one). The same random queries as the fake-server and evaluator tests must select the
reference evaluator's rows, and REST searches must answer as on PostgreSQL."""

import os
import uuid

import pytest
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings

from search.engines.elasticsearch_compiler import compile_query
from search.engines.elasticsearch_documents import INDEX_SETTINGS, alias_name, datarow_document, index_mapping
from search.indexing import services
from search.indexing.documents import datarows_by_id
from search.ql import parse, validate
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.search import reference
from tests.search.render import to_text
from tests.search.strategies import queries
from tests.search.test_elasticsearch_compiler import GOLDEN_QUERIES
from tests.search.test_postgres_engine import ISSUE_EXAMPLES, evaluation_examples

ELASTICSEARCH_URL = os.environ.get("ELASTICSEARCH_URL")
pytestmark = [
    pytest.mark.elasticsearch,
    pytest.mark.django_db(databases=["default", "reader"]),
    pytest.mark.skipif(not ELASTICSEARCH_URL, reason="ELASTICSEARCH_URL is not set: no live server"),
]


@pytest.fixture(scope="module")
def live(search_data, django_db_blocker):
    """A throwaway index of the module's datarows on the live server, refreshed so searches see them."""
    client = Elasticsearch(ELASTICSEARCH_URL, request_timeout=30)
    index = f"mlops-live-test-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index, settings=INDEX_SETTINGS, mappings=index_mapping(search_data.catalog))
    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        rows = datarows_by_id(
            project_id=search_data.project_id, datarow_ids=[r["id"] for r in search_data.rows], using="default"
        )
    operations = []
    for row in rows:
        operations += [{"index": {"_index": index, "_id": str(row["id"])}}, datarow_document(row, search_data.catalog)]
    answer = client.bulk(operations=operations, refresh=True)
    assert not answer["errors"], [item for item in answer["items"] if next(iter(item.values())).get("error")][:3]
    yield client, index
    client.indices.delete(index=index)


def _live_ids(live, query, dataset_id=None) -> list[int]:
    client, index = live
    answer = client.search(
        index=index,
        query=compile_query(query, dataset_id=dataset_id).to_dict(),
        size=10_000,
        source=False,
        sort=[{"id": "asc"}],
    )
    return [int(hit["_id"]) for hit in answer["hits"]["hits"]]


def test_examples_select_the_reference_rows_on_a_live_server(search_data, live):
    for text in [*ISSUE_EXAMPLES, *GOLDEN_QUERIES]:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        assert _live_ids(live, query) == reference.datarow_ids(query, search_data.rows), text
    for text, query in evaluation_examples(search_data):
        assert _live_ids(live, query) == reference.datarow_ids(query, search_data.rows), text


def test_random_queries_select_the_reference_rows_on_a_live_server(search_data, live):
    @settings(
        max_examples=300,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(queries(search_data.dataset_ids, runs=search_data.run_names))
    def agree(tree):
        text = to_text(tree)
        query = validate(
            parse(text), catalog=search_data.catalog, text=text, evaluation_runs=search_data.evaluation_runs
        )
        assert _live_ids(live, query) == reference.datarow_ids(query, search_data.rows), text

    agree()


def test_rest_search_on_a_live_server_answers_as_on_postgres(search_data, make_token, api_client, settings):
    from search.engines.elasticsearch_engine import _client
    from tests.search.test_elasticsearch_engine import _walk
    from tests.search.test_search_api import FACETS
    from tests.search.test_sorting import SORTS

    settings.ELASTICSEARCH_URL = ELASTICSEARCH_URL
    _client.cache_clear()
    client = api_client(make_token(TENANT_A))
    alias = alias_name(TENANT_A, search_data.project_id)
    es = Elasticsearch(ELASTICSEARCH_URL)
    es.indices.delete(index=f"{alias}*", ignore_unavailable=True, allow_no_indices=True)
    try:
        with tenant_scope(TENANT_A):
            services.reindex_project(tenant_schema=TENANT_A, project_id=search_data.project_id, using="default")
        es.indices.refresh(index=alias)
        bodies = [{"page_size": 9, **sort, "sort": prefix + sort["sort"]} for sort in SORTS for prefix in ("", "-")]
        bodies.append({"page_size": 5, "facets": FACETS, "query": "metadata.weather != 'rain'"})
        for body in bodies:
            settings.SEARCH_ENGINE = "postgres"
            on_postgres = _walk(client, search_data.project_id, body)
            settings.SEARCH_ENGINE = "elasticsearch"
            on_elasticsearch = _walk(client, search_data.project_id, body)
            assert [[r["id"] for r in page["results"]] for page in on_elasticsearch] == [
                [r["id"] for r in page["results"]] for page in on_postgres
            ], body
            assert on_elasticsearch[0]["total"] == on_postgres[0]["total"]
            assert on_elasticsearch[0]["facets"] == on_postgres[0]["facets"]
    finally:
        es.indices.delete(index=f"{alias}*", ignore_unavailable=True, allow_no_indices=True)
        _client.cache_clear()


def test_random_statistics_on_a_live_server_agree_with_the_reference(search_data, live):
    """Aggregations as a real server evaluates them (terms sizes, nested / reverse_nested, range edges)."""
    from search.engines.elasticsearch_statistics import elasticsearch_statistics
    from tests.search import reference_statistics
    from tests.search.strategies import statistics

    client, index = live

    @settings(
        max_examples=150,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(queries(search_data.dataset_ids), statistics(by_split=False))
    def agree(tree, statistic):
        text = to_text(tree)
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        answer = elasticsearch_statistics(
            (statistic,), client=client, index=index, query=query, dataset_id=None, cap=10_000
        )
        assert answer == reference_statistics.statistics(query, search_data.rows, (statistic,)), (text, statistic)

    agree()
