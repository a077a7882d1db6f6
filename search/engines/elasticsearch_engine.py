"""The Elasticsearch engine behind the search interface: one search request per page (hits, total, facets) on the
project's alias; it returns ids only (document id = datarow id), sorted with search_after, never offsets.

Unverified against a real server (see README): the tests run these requests against a small fake server that
evaluates the DSL subset, and a live suite runs when ELASTICSEARCH_URL is set.
"""

import math
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache

from django.conf import settings
from elasticsearch import Elasticsearch, dsl

from search.engines.base import (
    FACET_OBJECT_FIELDS,
    FACET_SIZE,
    EnginePage,
    SearchRequest,
    SearchTotal,
    SortSpec,
    StatisticsRequest,
    cursor_error,
    facet_metadata_path,
    get_engine,
)
from search.engines.elasticsearch_compiler import compile_query
from search.engines.elasticsearch_documents import OBJECT_PATHS, alias_name, encode_path, metadata_field
from search.engines.elasticsearch_statistics import elasticsearch_statistics
from search.ql.validation import ValidQuery
from tenancy.models import Tenant

_MAPPING_TYPES = {"number": "double", "string": "keyword", "datetime": "date", "boolean": "boolean"}


def elasticsearch_url(tenant_schema: str) -> str:
    """The tenant's Elasticsearch: the one of its database cluster when settings name one, else ELASTICSEARCH_URL."""
    database = Tenant.objects.filter(schema_name=tenant_schema).values_list("database", flat=True).first()
    url = settings.ELASTICSEARCH_CLUSTER_URLS.get(database) or settings.ELASTICSEARCH_URL
    if not url:
        raise RuntimeError("the Elasticsearch engine needs ELASTICSEARCH_URL")
    return url


@lru_cache(maxsize=16)
def _client(url: str) -> Elasticsearch:
    # No retries in the client: indexing tasks retry with backoff, and a search answers or fails fast.
    return Elasticsearch(url, request_timeout=settings.ELASTICSEARCH_TIMEOUT_SECONDS, max_retries=0)


def client_for_tenant(tenant_schema: str) -> Elasticsearch:
    return _client(elasticsearch_url(tenant_schema))


def sort_clauses(sort: SortSpec, catalog: dict[str, str]) -> list[dict]:
    """The sort of a page; id breaks ties in the same direction, and missing values come last either way."""
    order = "desc" if sort.descending else "asc"
    value_type = sort.value_type(catalog)
    tie = {"id": {"order": order}}
    if value_type is None:
        return [tie]
    if sort.field == "created_at":
        return [{"created_at": {"order": order}}, tie]
    path = sort.metadata_path()
    if path is not None:
        # The minimum of a list, in both directions, as on PostgreSQL.
        return [
            {
                metadata_field(tuple(path.split("."))): {
                    "order": order,
                    "mode": "min",
                    "missing": "_last",
                    "unmapped_type": _MAPPING_TYPES[value_type],
                }
            },
            tie,
        ]
    predictions = OBJECT_PATHS["prediction"]
    which = [dsl.query.Term(**{f"{predictions}.model": sort.model})]
    if sort.class_name is not None:
        which.append(dsl.query.Term(**{f"{predictions}.class": sort.class_name}))
    return [
        {
            f"{predictions}.score": {
                "order": order,
                "mode": "max",
                "missing": "_last",
                "nested": {"path": predictions, "filter": dsl.query.Bool(filter=which).to_dict()},
            }
        },
        tie,
    ]


def facet_aggregation(facet: str, catalog: dict[str, str]) -> dict:
    path = facet_metadata_path(facet, catalog)
    order = [{"_count": "desc"}, {"_key": "asc"}]
    if facet in FACET_OBJECT_FIELDS:
        objects = OBJECT_PATHS[facet.split(".")[0]]
        # Rows, not objects: reverse_nested counts the datarows holding each class.
        return {
            "nested": {"path": objects},
            "aggs": {
                "values": {
                    "terms": {
                        "field": f"{objects}.class",
                        "size": FACET_SIZE,
                        "order": [{"rows": "desc"}, {"_key": "asc"}],
                    },
                    "aggs": {"rows": {"reverse_nested": {}}},
                }
            },
        }
    field = "tags" if path is None else f"metadata.{encode_path(tuple(path.split('.')))}"
    return {"terms": {"field": field, "size": FACET_SIZE, "order": order}}


def _facet_values(facet: str, catalog: dict[str, str], answer: dict) -> list[dict]:
    if facet in FACET_OBJECT_FIELDS:
        return [
            {"value": bucket["key"], "count": bucket["rows"]["doc_count"]} for bucket in answer["values"]["buckets"]
        ]
    path = facet_metadata_path(facet, catalog)
    kind = catalog[path] if path is not None else "string"
    values = []
    for bucket in answer["buckets"]:
        value = bucket["key"]
        if kind == "boolean":
            value = bucket.get("key_as_string", "true" if value else "false") == "true"
        elif kind == "number" and isinstance(value, float) and value.is_integer():
            value = int(value)
        values.append({"value": value, "count": bucket["doc_count"]})
    return values


def _json_sort_value(value):
    """Sort values go into the cursor as JSON: a missing value's infinite sentinel travels as its name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class ElasticsearchEngine:
    name = "elasticsearch"

    def search(self, request: SearchRequest, *, using: str) -> EnginePage:
        sort = sort_clauses(request.sort, request.catalog)
        search = dsl.Search().query(compile_query(request.query, dataset_id=request.dataset_id)).sort(*sort)
        search = search.extra(
            size=request.limit + 1,
            _source=False,
            track_total_hits=True if request.count == "exact" else request.estimate_cap,
        )
        if request.after is not None:
            value, after_id = request.after
            if len(sort) == 1:
                search = search.extra(search_after=[after_id])
            elif value is None or isinstance(value, (str, int, float, bool)):
                search = search.extra(search_after=[value, after_id])
            else:
                raise cursor_error("Not a cursor from this API; pass next_cursor as it was given.")
        body = search.to_dict()
        if request.facets:
            body["aggs"] = {
                f"facet_{i}": facet_aggregation(facet, request.catalog) for i, facet in enumerate(request.facets)
            }
        answer = client_for_tenant(request.tenant_schema).search(
            index=alias_name(request.tenant_schema, request.project_id), body=body, ignore_unavailable=True
        )
        answer = answer.body if hasattr(answer, "body") else answer
        hits = answer["hits"]["hits"]
        page = hits[: request.limit]
        next_after = None
        if len(hits) > request.limit:
            last_sort = page[-1]["sort"]
            next_after = (None if len(last_sort) == 1 else _json_sort_value(last_sort[0]), int(page[-1]["_id"]))
        total = answer["hits"]["total"]
        # No index yet (nothing indexed) answers no hits and no aggregations.
        aggregations = answer.get("aggregations", {})
        facets = {
            facet: _facet_values(facet, request.catalog, aggregations[f"facet_{i}"])
            if f"facet_{i}" in aggregations
            else []
            for i, facet in enumerate(request.facets)
        }
        return EnginePage(
            [int(hit["_id"]) for hit in page], next_after, SearchTotal(total["value"], total["relation"]), facets
        )

    def statistics(self, request: StatisticsRequest, *, using: str) -> list[dict]:
        """Aggregations; a statistic grouped by a slice's splits is counted on PostgreSQL, where splits are
        (search/engines/elasticsearch_statistics.py)."""
        by_split = tuple(statistic for statistic in request.statistics if statistic.slice_id is not None)
        rest = tuple(statistic for statistic in request.statistics if statistic.slice_id is None)
        answers = dict(
            zip(
                rest,
                elasticsearch_statistics(
                    rest,
                    client=client_for_tenant(request.tenant_schema),
                    index=alias_name(request.tenant_schema, request.project_id),
                    query=request.query,
                    dataset_id=request.dataset_id,
                    cap=request.max_values,
                ),
                strict=True,
            )
        )
        if by_split:
            answers.update(
                zip(
                    by_split,
                    get_engine("postgres").statistics(replace(request, statistics=by_split), using=using),
                    strict=True,
                )
            )
        return [answers[statistic] for statistic in request.statistics]

    def iter_matching_ids(
        self,
        *,
        tenant_schema: str,
        project_id: int,
        query: ValidQuery | None,
        dataset_id: int | None = None,
        batch_size: int = 1000,
        using: str,
    ) -> Iterator[list[int]]:
        """search_after on id: every document that matches throughout the walk comes exactly once, in id order."""
        client = client_for_tenant(tenant_schema)
        base = dsl.Search().query(compile_query(query, dataset_id=dataset_id)).sort({"id": {"order": "asc"}})
        base = base.extra(size=batch_size, _source=False, track_total_hits=False)
        after = None
        while True:
            search = base.extra(search_after=[after]) if after is not None else base
            answer = client.search(
                index=alias_name(tenant_schema, project_id), body=search.to_dict(), ignore_unavailable=True
            )
            ids = [int(hit["_id"]) for hit in answer["hits"]["hits"]]
            if not ids:
                return
            yield ids
            after = ids[-1]
