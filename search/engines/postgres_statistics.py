"""Statistics on PostgreSQL: each one statement, a GROUP BY over the matching datarows (the search's compiled
condition) joined to what is counted, so the work is one pass of the object table (or of the matching rows), never
per-row work in Python. Object values are grouped by class id (named after grouping) or by attribute value; numbers
by their bin: width_bucket over the bin edges, computed in SQL from the range (given, or the min and max of the
values in the same statement).

With a slice, the matches are its members, grouped by their split (the member table's `split`).
"""

from dataclasses import dataclass

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
# Object fields counted by id and named after grouping: the id column, the table of names (in mlops.tables), the name.
_NAMED = {
    "class": ("ontology_class_id", "ONTOLOGY_CLASS", "c.name"),
    "model": ("model_version_id", "MODEL_VERSION", "c.name || '@' || c.version"),
}


def _matches(
    statistic: Statistic, condition: CompiledQuery, *, values: CompiledQuery | None = None, lateral: str = ""
) -> CompiledQuery:
    """The matching datarows `d` as `SELECT d.id, <group> AS g[, <values>] FROM ... [<lateral>] WHERE <condition>`
    (`values` carries its columns and its WHERE test; its parameters are the lateral join's)."""
    columns = f", {values.sql}" if values is not None else ""
    params = values.params if values is not None else []
    if statistic.slice_id is None:
        source, group = f"{tables.DATAROW} AS d", "-1"
    else:
        source = f"{tables.DATAROW} AS d JOIN {tables.SLICE_MEMBER} AS sm ON sm.datarow_id = d.id AND sm.slice_id = %s"
        group = f"coalesce(sm.split, {len(SPLIT_NAMES)})"
        params = [statistic.slice_id, *params]
    return CompiledQuery(
        f"SELECT d.id, {group} AS g{columns} FROM {source} {lateral} WHERE {condition.sql}",
        [*params, *condition.params],
    )


@dataclass(frozen=True)
class _Objects:
    """The objects counted: `WITH <ctes>` (may be empty, with `cte_params`), then `FROM <source> WHERE <where>`
    (with `where_params`), grouped by `group`."""

    ctes: str
    cte_params: list
    source: str
    where: str
    where_params: list
    group: str

    def with_clause(self) -> str:
        return f"WITH {self.ctes} " if self.ctes else ""


def _objects(
    statistic: Statistic, condition: CompiledQuery, project_id: int, *, scope: CompiledQuery | None
) -> _Objects:
    """The objects of the matches (`AS o`), of the statistic's model version when it names one. With `scope` (every
    row of the project matches), that test of the object's class scopes the objects without a join to the datarows:
    the statement is the plain GROUP BY of the object table."""
    where, params = "true", []
    if statistic.model is not None:
        where = (
            f"o.model_version_id IN (SELECT id FROM {tables.MODEL_VERSION} WHERE project_id = %s "
            "AND name || '@' || version = %s)"
        )
        params = [project_id, statistic.model]
    table = getattr(tables, OBJECT_TABLES[statistic.scope])
    if scope is not None and statistic.slice_id is None:
        return _Objects("", [], f"{table} AS o", f"{scope.sql} AND {where}", [*scope.params, *params], "-1")
    matches = _matches(statistic, condition)
    return _Objects(
        f"m AS ({matches.sql})", matches.params, f"{table} AS o JOIN m ON m.id = o.datarow_id", where, params, "m.g"
    )


def project_objects_scope(project_id: int, using: str) -> CompiledQuery:
    """Which objects (`o`) are the project's, by their class (classes belong to one project): none to test when the
    tenant's classes are all the project's, else its class ids. A test against a subquery of the class table doubled
    the cost of a histogram over every object (a hash probe per object)."""
    with connections[using].cursor() as db:
        db.execute(
            f"SELECT coalesce(array_agg(id) FILTER (WHERE project_id = %s), '{{}}'), count(*) FROM {tables.ONTOLOGY_CLASS}",
            [project_id],
        )
        ids, every = db.fetchone()
    if len(ids) == every:
        return CompiledQuery("true", [])
    return CompiledQuery("o.ontology_class_id = ANY(%s)", [ids])


def count_statement(
    statistic: Statistic, condition: CompiledQuery, project_id: int, cap: int, *, scope: CompiledQuery | None = None
) -> CompiledQuery:
    """Rows (group, value: class name or JSON text, count); at most cap + 1 per group are needed to know a group
    has too many values, so the statement reads no more than (cap + 1) x groups."""
    objects = _objects(statistic, condition, project_id, scope=scope)
    counted = "count(*)" if statistic.count == "objects" else "count(DISTINCT o.datarow_id)"
    if statistic.path[0] in _NAMED:
        column, table, name = _NAMED[statistic.path[0]]
        grouped = (
            f"SELECT x.g, {name}, x.n FROM (SELECT {objects.group} AS g, o.{column} AS k, {counted} AS n "
            f"FROM {objects.source} WHERE {objects.where} GROUP BY 1, 2) AS x "
            f"JOIN {getattr(tables, table)} AS c ON c.id = x.k"
        )
        value_params: list = []
    else:
        # Each value an object holds counts once for it (a list may repeat one).
        grouped = (
            f"SELECT {objects.group}, a.v::text, {counted} FROM {objects.source} CROSS JOIN LATERAL "
            f"(SELECT DISTINCT v FROM jsonb_path_query(o.attributes, %s::jsonpath) AS v "
            f"WHERE jsonb_typeof(v) IN {_SCALARS}) AS a WHERE {objects.where} GROUP BY 1, a.v"
        )
        value_params = [jsonpath_values(statistic.path[1:])]
    return CompiledQuery(
        f"{objects.with_clause()}{grouped} LIMIT %s",
        [*objects.cte_params, *value_params, *objects.where_params, (cap + 1) * len(statistic.groups())],
    )


def histogram_statement(
    statistic: Statistic, condition: CompiledQuery, project_id: int, *, scope: CompiledQuery | None = None
) -> CompiledQuery:
    """Rows (group, bin, count, low, high). Objects count once each; a row holding several values of a metadata path
    counts once in each bin (and in below / above) where it has one, as a document does in Elasticsearch."""
    distinct = False
    if statistic.scope != "row":
        objects = _objects(statistic, condition, project_id, scope=scope)
        column = statistic.path[0]
        ctes = f"{objects.ctes}, " if objects.ctes else ""
        values = (
            f"{ctes}v AS NOT MATERIALIZED (SELECT {objects.group} AS g, o.datarow_id AS r, o.{column}::float8 AS v "
            f"FROM {objects.source} WHERE o.{column} IS NOT NULL AND {objects.where})"
        )
        params = [*objects.cte_params, *objects.where_params]
    else:
        # One pass over the matching rows, their values read on the way.
        if statistic.path[0] == "metadata":
            distinct = True
            matches = _matches(
                statistic,
                condition,
                values=CompiledQuery("(x.v #>> '{}')::float8 AS v", [jsonpath_values(statistic.path[1:])]),
                lateral="CROSS JOIN LATERAL jsonb_path_query(d.metadata, %s::jsonpath) AS x(v)",
            )
            matches = CompiledQuery(matches.sql + " AND jsonb_typeof(x.v) = 'number'", matches.params)
        else:
            column = statistic.path[0]
            matches = _matches(statistic, condition, values=CompiledQuery(f"d.{column}::float8 AS v", []))
            matches = CompiledQuery(matches.sql + f" AND d.{column} IS NOT NULL", matches.params)
        values = f"v AS NOT MATERIALIZED (SELECT m.g, m.id AS r, m.v FROM ({matches.sql}) AS m)"
        params = matches.params
    if statistic.range is None:
        bounds, bound_params = "SELECT min(v) AS lo, max(v) AS hi FROM v", []
    else:
        bounds, bound_params = "SELECT %s::float8 AS lo, %s::float8 AS hi", list(statistic.range)
    # search.engines.statistics.bin_edges and bin_of, in float8: the same edges, the same comparisons. The edges are
    # built once (b is materialized): inlined, a range from min and max made them a subplan run for every value. The
    # values are read twice when the range is computed (min and max, then the bins) rather than materialized: a
    # second scan costs less than writing every value to a tuplestore that spills past work_mem.
    edges = (
        "ARRAY(SELECT r.lo + i * ((r.hi - r.lo) / %s) FROM generate_series(0, CASE WHEN r.hi = r.lo THEN 0 "
        "ELSE %s - 1 END) AS i)"
    )
    counted = "count(DISTINCT k.r)" if distinct else "count(*)"
    return CompiledQuery(
        f"WITH {values}, b AS MATERIALIZED (SELECT r.lo, r.hi, {edges} AS edges FROM ({bounds}) AS r), "
        f"k AS (SELECT v.g, v.r, CASE WHEN v.v > b.hi THEN {ABOVE} ELSE width_bucket(v.v, b.edges) - 1 END AS bin "
        f"FROM v, b) "
        f"SELECT k.g, k.bin, {counted}, (SELECT lo FROM b), (SELECT hi FROM b) FROM k GROUP BY k.g, k.bin",
        [*params, statistic.bins, statistic.bins, *bound_params],
    )


def postgres_statistics(
    statistics: tuple[Statistic, ...], *, project_id: int, query, dataset_id: int | None, cap: int, using: str
) -> list[dict]:
    condition = compile_filter(query, project_id=project_id, dataset_id=dataset_id, using=using)
    # Every row of the project matches: its objects are found by their classes, without the datarows.
    scope = project_objects_scope(project_id, using) if query is None and dataset_id is None else None
    results = []
    for statistic in statistics:
        if statistic.kind == "count":
            statement = count_statement(statistic, condition, project_id, cap, scope=scope)
            results.append(_count(statistic, _rows(statement, using), cap))
        else:
            statement = histogram_statement(statistic, condition, project_id, scope=scope)
            results.append(_histogram(statistic, _rows(statement, using)))
    return results


def _rows(statement: CompiledQuery, using: str) -> list[tuple]:
    with connections[using].cursor() as db:
        db.execute(statement.sql, statement.params)
        return db.fetchall()


def _count(statistic: Statistic, rows: list[tuple], cap: int) -> dict:
    counts: dict[str, dict] = {name: {} for name in statistic.groups()}
    for group, value, count in rows:
        counts[_GROUPS[group]][value_key(value if statistic.path[0] in _NAMED else orjson.loads(value))] = count
    if any(len(values) > cap for values in counts.values()):
        raise too_many_values(statistic, cap)
    return statistic_result(statistic, [count_group(name, counts[name], statistic.limit) for name in counts])


def _histogram(statistic: Statistic, rows: list[tuple]) -> dict:
    counts: dict[str, dict] = {name: {} for name in statistic.groups()}
    bounds = statistic.range
    for group, index, count, low, high in rows:
        counts[_GROUPS[group]][index] = count
        bounds = (low, high)
    return statistic_result(
        statistic, [histogram_group(name, statistic, bounds, counts[name]) for name in statistic.groups()]
    )
