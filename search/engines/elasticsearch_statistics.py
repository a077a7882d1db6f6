"""Statistics on Elasticsearch: aggregations over the query's documents (size 0: no hits), one request per statistic
(two for a histogram without a range: min and max first, then the bins).

Exact counts: a terms aggregation asks for SEARCH_STATISTICS_MAX_VALUES + 1 buckets, so every value of a statistic
within the cap comes back with its full count whatever the shard count (a shard returns all its terms when they are
fewer than the size), and one more than the cap says there are too many (a 400, as on PostgreSQL); objects are
counted with `nested`, images with `reverse_nested` under each value. Histograms are a range aggregation over the bin
edges of search.engines.statistics (a document counted once in each bin where it has a value), and range filters for
what is below and above.

The index holds slice memberships but not splits (a split rewrites member rows without reindexing), so a statistic
grouped by a slice's splits is counted by PostgreSQL, which holds both.
"""

from elasticsearch import Elasticsearch, dsl

from search.engines.elasticsearch_compiler import compile_query
from search.engines.elasticsearch_documents import (
    ATTRIBUTE_TYPES,
    OBJECT_PATHS,
    attribute_field,
    metadata_field,
)
from search.engines.statistics import (
    ABOVE,
    ALL,
    BELOW,
    Statistic,
    bin_edges,
    count_group,
    histogram_group,
    statistic_result,
    too_many_values,
    value_key,
)


def _field(statistic: Statistic) -> str:
    path = statistic.path
    if statistic.scope != "row":
        return f"{OBJECT_PATHS[statistic.scope]}.{path[0]}"
    if path[0] == "metadata":
        return metadata_field(path[1:])
    return path[0]


def _within_objects(statistic: Statistic, aggs: dict) -> dict:
    """`aggs` over the objects of the statistic's kind (and model version), or as they are for a row field."""
    if statistic.scope == "row":
        return aggs
    if statistic.model is not None:
        model = f"{OBJECT_PATHS['prediction']}.model"
        aggs = {"objects": {"filter": {"term": {model: statistic.model}}, "aggs": aggs}}
    return {"objects": {"nested": {"path": OBJECT_PATHS[statistic.scope]}, "aggs": aggs}}


def _objects_answer(statistic: Statistic, answer: dict) -> dict:
    if statistic.scope == "row":
        return answer
    answer = answer["objects"]
    return answer["objects"] if statistic.model is not None else answer


def count_aggregations(statistic: Statistic, cap: int) -> dict:
    """Per value field (the class, or each typed field of an attribute path): a terms aggregation of cap + 1."""
    if statistic.path in (("class",), ("model",)):
        fields = {"string": _field(statistic)}
    else:
        fields = {kind: attribute_field(statistic.scope, kind, statistic.path[1:]) for kind in ATTRIBUTE_TYPES}
    rows = {"rows": {"reverse_nested": {}}} if statistic.count == "images" else {}
    return _within_objects(
        statistic,
        {
            f"values_{kind}": {"terms": {"field": field, "size": cap + 1}, **({"aggs": rows} if rows else {})}
            for kind, field in fields.items()
        },
    )


def bounds_aggregations(statistic: Statistic) -> dict:
    field = _field(statistic)
    return _within_objects(statistic, {"low": {"min": {"field": field}}, "high": {"max": {"field": field}}})


def histogram_aggregations(statistic: Statistic, low: float, high: float) -> dict:
    """A range aggregation over the bin edges (from inclusive, to exclusive: the last edge is the double above high),
    and range filters for the values outside."""
    field = _field(statistic)
    edges = bin_edges(low, high, statistic.bins)
    ranges = [{"from": edges[i], "to": edges[i + 1]} for i in range(len(edges) - 1)]
    return _within_objects(
        statistic,
        {
            "bins": {"range": {"field": field, "ranges": ranges}},
            "below": {"filter": {"range": {field: {"lt": low}}}},
            "above": {"filter": {"range": {field: {"gt": high}}}},
        },
    )


def _search(client: Elasticsearch, index: str, query, dataset_id: int | None, aggs: dict) -> dict:
    body = dsl.Search().query(compile_query(query, dataset_id=dataset_id)).extra(size=0, track_total_hits=False)
    body = {**body.to_dict(), "aggs": aggs}
    answer = client.search(index=index, body=body, ignore_unavailable=True)
    answer = answer.body if hasattr(answer, "body") else answer
    return answer.get("aggregations")  # None: no index yet, nothing indexed


def _count(statistic: Statistic, answer: dict | None, cap: int) -> dict:
    counts: dict = {}
    if answer is not None:
        answer = _objects_answer(statistic, answer)
        for name, values in answer.items():
            if not name.startswith("values_"):
                continue
            kind = name.removeprefix("values_")
            if len(values["buckets"]) > cap:
                raise too_many_values(statistic, cap)
            for bucket in values["buckets"]:
                value = bucket["key"]
                if kind == "boolean":
                    value = bucket.get("key_as_string", "true" if value else "false") == "true"
                count = bucket["rows"]["doc_count"] if statistic.count == "images" else bucket["doc_count"]
                counts[value_key(value)] = count
    if len(counts) > cap:
        raise too_many_values(statistic, cap)
    return statistic_result(statistic, [count_group(ALL, counts, statistic.limit)])


def _histogram(statistic: Statistic, answer: dict | None, low: float, high: float) -> dict:
    counts: dict = {}
    if answer is not None:
        answer = _objects_answer(statistic, answer)
        counts[BELOW] = answer["below"]["doc_count"]
        counts[ABOVE] = answer["above"]["doc_count"]
        for index, bucket in enumerate(answer["bins"]["buckets"]):  # in the order of the ranges asked
            counts[index] = bucket["doc_count"]
    return statistic_result(statistic, [histogram_group(ALL, statistic, (low, high), counts)])


def elasticsearch_statistics(
    statistics: tuple[Statistic, ...],
    *,
    client: Elasticsearch,
    index: str,
    query,
    dataset_id: int | None,
    cap: int,
) -> list[dict]:
    results = []
    for statistic in statistics:
        if statistic.kind == "count":
            answer = _search(client, index, query, dataset_id, count_aggregations(statistic, cap))
            results.append(_count(statistic, answer, cap))
            continue
        bounds = statistic.range
        if bounds is None:
            answer = _search(client, index, query, dataset_id, bounds_aggregations(statistic))
            found = _objects_answer(statistic, answer) if answer is not None else None
            if found is None or found["low"]["value"] is None:
                results.append(statistic_result(statistic, [histogram_group(ALL, statistic, None, {})]))
                continue
            bounds = (found["low"]["value"], found["high"]["value"])
        answer = _search(client, index, query, dataset_id, histogram_aggregations(statistic, *bounds))
        results.append(_histogram(statistic, answer, *bounds))
    return results
