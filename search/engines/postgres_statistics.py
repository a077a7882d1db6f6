"""Statistics on PostgreSQL: each one statement, a GROUP BY over the matching datarows (the search's compiled
condition) joined to what is counted, so the work is one pass of the object table (or of the matching rows), never
per-row work in Python. Object values are grouped by class id (named after grouping) or by attribute value; numbers
by their bin: width_bucket over the bin edges, computed in SQL from the range (given, or the min and max of the
values in the same statement).

With a slice, the matches are its members, grouped by their split (the member table's `split`).
"""

import orjson
from django.db import connections

from mlops import tables
from search.engines.postgres_compiler import OBJECT_TABLES, compile_filter
from search.engines.postgres_sql import CompiledQuery, jsonpath_values
from search.engines.statistics import (
    ABOVE,
    ALL,
    SPLIT_NAMES,
    UNASSIGNED,
    Statistic,
    count_group,
    histogram_group,
    statistic_result,
    too_many_values,
    value_key,
)

# The group column of the matches: -1 without a slice, else the member's split (len(SPLIT_NAMES) when it has none).
_GROUPS = {-1: ALL, **dict(enumerate(SPLIT_NAMES)), len(SPLIT_NAMES): UNASSIGNED}
_SCALARS = "('string', 'number', 'boolean')"


def _matches(statistic: Statistic, condition: CompiledQuery) -> tuple[str, str, list]:
    """The FROM and WHERE of the matching datarows `d` with their group `g`, and the parameters."""
    if statistic.slice_id is None:
        return f"{tables.DATAROW} AS d", "-1", []
    return (
        f"{tables.DATAROW} AS d JOIN {tables.SLICE_MEMBER} AS sm ON sm.datarow_id = d.id AND sm.slice_id = %s",
        f"coalesce(sm.split, {len(SPLIT_NAMES)})",
        [statistic.slice_id],
    )


def _objects(statistic: Statistic, project_id: int) -> tuple[str, list]:
    """The objects of the matches `m` (`AS o`), of the statistic's model version when it names one."""
    sql = f"{getattr(tables, OBJECT_TABLES[statistic.scope])} AS o JOIN m ON m.id = o.datarow_id"
    if statistic.model is None:
        return sql, []
    return (
        sql + f" AND o.model_version_id IN (SELECT id FROM {tables.MODEL_VERSION} WHERE project_id = %s "
        "AND name || '@' || version = %s)",
        [project_id, statistic.model],
    )


def count_statement(statistic: Statistic, condition: CompiledQuery, project_id: int, cap: int) -> CompiledQuery:
    """Rows (group, value: class name or JSON text, count); at most cap + 1 per group are needed to know a group
    has too many values, so the statement reads no more than (cap + 1) x groups."""
    source, group, params = _matches(statistic, condition)
    objects, object_params = _objects(statistic, project_id)
    counted = "count(*)" if statistic.count == "objects" else "count(DISTINCT o.datarow_id)"
    if statistic.path == ("class",):
        grouped = (
            f"SELECT x.g, c.name, x.n FROM (SELECT m.g, o.ontology_class_id AS k, {counted} AS n FROM {objects} "
            f"GROUP BY 1, 2) AS x JOIN {tables.ONTOLOGY_CLASS} AS c ON c.id = x.k"
        )
        value_params: list = []
    else:
        # Each value an object holds counts once for it (a list may repeat one).
        grouped = (
            f"SELECT m.g, a.v::text, {counted} FROM {objects} CROSS JOIN LATERAL (SELECT DISTINCT v FROM "
            f"jsonb_path_query(o.attributes, %s::jsonpath) AS v WHERE jsonb_typeof(v) IN {_SCALARS}) AS a "
            f"GROUP BY m.g, a.v"
        )
        value_params = [jsonpath_values(statistic.path[1:])]
    return CompiledQuery(
        f"WITH m AS (SELECT d.id, {group} AS g FROM {source} WHERE {condition.sql}) {grouped} LIMIT %s",
        [*params, *condition.params, *object_params, *value_params, (cap + 1) * len(statistic.groups())],
    )


def histogram_statement(statistic: Statistic, condition: CompiledQuery, project_id: int) -> CompiledQuery:
    """Rows (group, bin, count, low, high). Objects count once each; a row holding several values of a metadata path
    counts once in each bin (and in below / above) where it has one, as a document does in Elasticsearch."""
    source, group, params = _matches(statistic, condition)
    distinct = False
    if statistic.scope != "row":
        objects, object_params = _objects(statistic, project_id)
        column = statistic.path[0]
        values = (
            f"m AS (SELECT d.id, {group} AS g FROM {source} WHERE {condition.sql}), "
            f"v AS (SELECT m.g, o.datarow_id AS r, o.{column}::float8 AS v FROM {objects} "
            f"WHERE o.{column} IS NOT NULL)"
        )
        params = [*params, *condition.params, *object_params]
    elif statistic.path[0] == "metadata":
        distinct = True
        values = (
            f"v AS (SELECT {group} AS g, d.id AS r, (x.v #>> '{{}}')::float8 AS v FROM {source} CROSS JOIN LATERAL "
            f"jsonb_path_query(d.metadata, %s::jsonpath) AS x(v) WHERE jsonb_typeof(x.v) = 'number' "
            f"AND {condition.sql})"
        )
        params = [*params, jsonpath_values(statistic.path[1:]), *condition.params]
    else:
        column = statistic.path[0]
        values = (
            f"v AS (SELECT {group} AS g, d.id AS r, d.{column}::float8 AS v FROM {source} "
            f"WHERE d.{column} IS NOT NULL AND {condition.sql})"
        )
        params = [*params, *condition.params]
    if statistic.range is None:
        bounds, bound_params = "SELECT min(v) AS lo, max(v) AS hi FROM v", []
    else:
        bounds, bound_params = "SELECT %s::float8 AS lo, %s::float8 AS hi", list(statistic.range)
    # search.engines.statistics.bin_edges and bin_of, in float8: the same edges, the same comparisons.
    edges = (
        "ARRAY(SELECT r.lo + i * ((r.hi - r.lo) / %s) FROM generate_series(0, CASE WHEN r.hi = r.lo THEN 0 "
        "ELSE %s - 1 END) AS i)"
    )
    counted = "count(DISTINCT k.r)" if distinct else "count(*)"
    return CompiledQuery(
        f"WITH {values}, b AS (SELECT r.lo, r.hi, {edges} AS edges FROM ({bounds}) AS r), "
        f"k AS (SELECT v.g, v.r, CASE WHEN v.v > b.hi THEN {ABOVE} ELSE width_bucket(v.v, b.edges) - 1 END AS bin, "
        f"b.lo, b.hi FROM v, b) "
        f"SELECT k.g, k.bin, {counted}, k.lo, k.hi FROM k GROUP BY k.g, k.bin, k.lo, k.hi",
        [*params, statistic.bins, statistic.bins, *bound_params],
    )


def postgres_statistics(
    statistics: tuple[Statistic, ...], *, project_id: int, query, dataset_id: int | None, cap: int, using: str
) -> list[dict]:
    condition = compile_filter(query, project_id=project_id, dataset_id=dataset_id, using=using)
    results = []
    for statistic in statistics:
        if statistic.kind == "count":
            results.append(_count(statistic, condition, project_id, cap, using))
        else:
            results.append(_histogram(statistic, condition, project_id, using))
    return results


def _count(statistic: Statistic, condition: CompiledQuery, project_id: int, cap: int, using: str) -> dict:
    statement = count_statement(statistic, condition, project_id, cap)
    with connections[using].cursor() as db:
        db.execute(statement.sql, statement.params)
        rows = db.fetchall()
    counts: dict[str, dict] = {name: {} for name in statistic.groups()}
    for group, value, count in rows:
        counts[_GROUPS[group]][value_key(value if statistic.path == ("class",) else orjson.loads(value))] = count
    if any(len(values) > cap for values in counts.values()):
        raise too_many_values(statistic, cap)
    return statistic_result(statistic, [count_group(name, counts[name], statistic.limit) for name in counts])


def _histogram(statistic: Statistic, condition: CompiledQuery, project_id: int, using: str) -> dict:
    statement = histogram_statement(statistic, condition, project_id)
    with connections[using].cursor() as db:
        db.execute(statement.sql, statement.params)
        rows = db.fetchall()
    counts: dict[str, dict] = {name: {} for name in statistic.groups()}
    bounds = statistic.range
    for group, index, count, low, high in rows:
        counts[_GROUPS[group]][index] = count
        bounds = (low, high)
    return statistic_result(
        statistic, [histogram_group(name, statistic, bounds, counts[name]) for name in statistic.groups()]
    )
