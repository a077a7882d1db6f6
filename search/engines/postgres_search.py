"""The PostgreSQL engine behind the search interface: a keyset page, the total and facets, each one statement built
on the compiled condition (search/engines/postgres_compiler.py), run on the alias the caller names.

Sort keys: created_at; the minimum of a metadata path's values of its catalog type (lists have several); a
prediction score: the maximum score of the row's predictions of the named model version (and class). A row
without a value sorts after every row with one, in either direction, and id breaks ties, so the order is total and
a keyset `(key, id)` resumes it exactly. Never OFFSET.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.conf import settings
from django.db import connections, transaction

from mlops import tables
from search.engines.base import (
    FACET_SIZE,
    EnginePage,
    SearchRequest,
    SearchTotal,
    SortSpec,
    StatisticsRequest,
    cursor_error,
    facet_metadata_path,
)
from search.engines.postgres_compiler import compile_filter, reads_object_rows
from search.engines.postgres_sql import CompiledQuery, jsonpath_direct, jsonpath_values
from search.engines.postgres_statistics import postgres_statistics
from search.engines.snapshot_sessions import can_share_snapshot, fetch_all_in_one_snapshot
from search.ql.validation import ValidQuery, parse_datetime

# Names in mlops.tables, read when a facet is counted.
FACET_OBJECT_TABLES = {"label.class": "LABEL", "prediction.class": "PREDICTION"}

# Per catalog type: the SQL value of one JSON value `v`, the test that it is of the type, and the aggregate taking
# the minimum of several.
_METADATA_KEYS = {
    "number": ("({v} #>> '{{}}')::float8", "jsonb_typeof({v}) = 'number'", "min"),
    "string": ("({v} #>> '{{}}') COLLATE \"C\"", "jsonb_typeof({v}) = 'string'", "min"),
    "boolean": ("({v} #>> '{{}}')::boolean", "jsonb_typeof({v}) = 'boolean'", "bool_and"),
    "datetime": (
        "({v} #>> '{{}}')::timestamptz",
        "jsonb_typeof({v}) = 'string' AND pg_input_is_valid({v} #>> '{{}}', 'timestamptz')",
        "min",
    ),
}


@dataclass(frozen=True)
class SortKey:
    """A row's sort key over the datarows `AS d`: `expression`, after an optional `join`; params in that order."""

    join: str
    expression: str
    params: list


def _facet_values(facet: str, catalog: dict[str, str]) -> CompiledQuery:
    """Per matching row `d`, the distinct values of a tags or metadata facet, as an array (object classes are
    counted from their tables instead). Tags are unique within a row (every write path keeps them so)."""
    path = facet_metadata_path(facet, catalog)
    if path is None:
        return CompiledQuery("d.tags", [])
    # Every value at the path, lists included, as conditions see them ("any element"). A path through objects to a
    # scalar has that one value (most rows): take it without collecting and deduplicating.
    keys = tuple(path.split("."))
    scalar = "('string', 'number', 'boolean')"
    direct = "jsonb_path_query_first(d.metadata, %s::jsonpath, '{}', true)"
    return CompiledQuery(
        f"CASE WHEN jsonb_typeof({direct}) IN {scalar} THEN ARRAY[{direct}] "
        f"ELSE ARRAY(SELECT DISTINCT v FROM jsonb_path_query(d.metadata, %s::jsonpath) AS v "
        f"WHERE jsonb_typeof(v) IN {scalar}) END",
        [jsonpath_direct(keys), jsonpath_direct(keys), jsonpath_values(keys)],
    )


def facets_statements(
    facets: tuple[str, ...], catalog: dict[str, str], condition: CompiledQuery, cap: int | None, *, split: bool
) -> list[CompiledQuery]:
    """The total and every facet in one statement, so the condition is evaluated once: the matches (with the facet
    values each holds) are materialised, counted, and grouped per facet (top FACET_SIZE values, a row counted once per
    value). With `cap`, only the first cap + 1 matches by id are read: the count says whether there are more than cap,
    and the facets then count the first cap of them (a sample). With `split`, each object facet (which reads the
    object table, the largest part of the work) gets a statement of its own, to run at the same time on another
    session; the first statement keeps the total. Rows: (facet index or -1 for the total, the value as text, the
    count)."""
    objects = [index for index, facet in enumerate(facets) if facet in FACET_OBJECT_TABLES]
    if not split or not objects:
        return [_facets_statement(facets, range(len(facets)), catalog, condition, cap, total=True)]
    rest = [index for index in range(len(facets)) if index not in objects]
    return [
        _facets_statement(facets, rest, catalog, condition, cap, total=True),
        *(_facets_statement(facets, [index], catalog, condition, cap, total=False) for index in objects),
    ]


def _facets_statement(
    facets: tuple[str, ...], indexes, catalog: dict[str, str], condition: CompiledQuery, cap: int | None, *, total: bool
) -> CompiledQuery:
    """The statement for the facets at `indexes`, and the total when asked."""
    columns, params = ["d.id"], []
    for index in indexes:
        if facets[index] not in FACET_OBJECT_TABLES:
            values = _facet_values(facets[index], catalog)
            columns.append(f"{values.sql} AS f{index}")
            params += values.params
    limit = "" if cap is None else f" ORDER BY d.id LIMIT {cap + 1}"
    sample = "SELECT * FROM m" if cap is None else f"SELECT * FROM m ORDER BY m.id LIMIT {cap}"
    parts = ["SELECT -1, NULL, count(*) FROM m"] if total else []
    top = f"ORDER BY 3 DESC, 2 LIMIT {FACET_SIZE}"
    for index in indexes:
        facet = facets[index]
        if facet in FACET_OBJECT_TABLES:
            # Each match's distinct classes, read by a probe of its own objects, counted per class id, then named.
            # A probe per match keeps the cost in step with the matches, where the planner would merge-join the
            # (datarow, class) index whole.
            parts.append(
                f"(SELECT {index}, c.name, x.rows FROM (SELECT p.class_id, count(*) AS rows FROM s "
                f"CROSS JOIN LATERAL (SELECT DISTINCT o.ontology_class_id AS class_id FROM "
                f"{getattr(tables, FACET_OBJECT_TABLES[facet])} AS o WHERE o.datarow_id = s.id) AS p "
                f"GROUP BY p.class_id) AS x JOIN {tables.ONTOLOGY_CLASS} AS c ON c.id = x.class_id {top})"
            )
        elif facet == "tags":
            # unnest in the select list (ProjectSet) rather than a lateral join: no nested loop per matching row.
            parts.append(
                f"(SELECT {index}, t.tag, count(*) FROM (SELECT unnest(s.f{index}) AS tag FROM s) AS t "
                f"GROUP BY t.tag {top})"
            )
        else:
            # Grouped and ordered as jsonb (numbers by value), handed back as JSON text.
            parts.append(
                f"(SELECT {index}, t.v::text, count(*) FROM (SELECT unnest(s.f{index}) AS v FROM s) AS t "
                f"GROUP BY t.v ORDER BY 3 DESC, t.v LIMIT {FACET_SIZE})"
            )
    return CompiledQuery(
        f"WITH m AS MATERIALIZED (SELECT {', '.join(columns)} FROM {tables.DATAROW} AS d "
        f"WHERE {condition.sql}{limit}), s AS ({sample}) " + " UNION ALL ".join(parts),
        [*params, *condition.params],
    )


def sort_key(sort: SortSpec, catalog: dict[str, str], project_id: int) -> SortKey | None:
    """The SQL of a row's sort key (None: the id alone); null when the row has none."""
    path = sort.metadata_path()
    if path is not None:
        keys = tuple(path.split("."))
        value, test, aggregate = _METADATA_KEYS[catalog[path]]
        # A path through objects to a scalar has that one value (most rows): read it directly. Otherwise (lists, or
        # no such path) take every value at the path as jsonpath's lax mode finds them.
        direct = "(d.metadata #> %s::text[])"
        parts = [
            f"CASE WHEN jsonb_typeof({direct}) IN ('string', 'number', 'boolean', 'null') THEN CASE WHEN ",
            test.format(v=direct),
            " THEN ",
            value.format(v=direct),
            " END ELSE ",
            f"(SELECT {aggregate}({value.format(v='v.value')}) FROM jsonb_path_query(d.metadata, %s::jsonpath) "
            f"AS v(value) WHERE {test.format(v='v.value')}) END",
        ]
        expression = "".join(parts)
        params = [list(keys)] * (expression.count("%s") - 1) + [jsonpath_values(keys)]
        return SortKey("", expression, params)
    if sort.field == "created_at":
        return SortKey("", "d.created_at", [])
    if sort.field == "prediction.score":
        # One grouped pass over the model's predictions (the (model version, class, datarow) index), joined.
        condition = (
            f"p.model_version_id IN (SELECT id FROM {tables.MODEL_VERSION} "
            "WHERE project_id = %s AND name || '@' || version = %s)"
        )
        params = [project_id, sort.model]
        if sort.class_name is not None:
            condition += (
                f" AND p.ontology_class_id IN (SELECT id FROM {tables.ONTOLOGY_CLASS} WHERE project_id = %s "
                "AND name = %s)"
            )
            params += [project_id, sort.class_name]
        join = (
            f"LEFT JOIN (SELECT p.datarow_id, max(p.score) AS score FROM {tables.PREDICTION} AS p "
            f"WHERE {condition} GROUP BY p.datarow_id) AS scored ON scored.datarow_id = d.id"
        )
        return SortKey(join, "scored.score", params)
    return None


def _after_value(value, value_type: str):
    """A cursor's sort value back in the key's SQL type; a 400 when it cannot be one."""
    if value is None:
        return None
    if value_type in ("datetime",) and isinstance(value, str) and parse_datetime(value) is not None:
        return parse_datetime(value)
    if value_type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if value_type == "string" and isinstance(value, str):
        return value
    if value_type == "boolean" and isinstance(value, bool):
        return value
    raise cursor_error("Not a cursor from this API; pass next_cursor as it was given.")


def _json_value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _keyset(request: SearchRequest, value_type: str | None, nullable: bool) -> CompiledQuery:
    if request.after is None:
        return CompiledQuery("true", [])
    value, after_id = request.after
    comparison = "<" if request.sort.descending else ">"
    if value_type is None:
        return CompiledQuery(f"s.id {comparison} %s", [after_id])
    value = _after_value(value, value_type)
    if value is None:
        if not nullable:
            raise cursor_error("Not a cursor from this API; pass next_cursor as it was given.")
        return CompiledQuery(f"(s.k IS NULL AND s.id {comparison} %s)", [after_id])
    # Rows without a key come after every row with one.
    missing = " OR s.k IS NULL" if nullable else ""
    return CompiledQuery(f"((s.k, s.id) {comparison} (%s, %s){missing})", [value, after_id])


@contextmanager
def _statement_cursor(using: str, *, capped: bool) -> Iterator:
    """A cursor on `using`; for a capped statement (count=estimate) inside a transaction whose work_mem and
    random_page_cost are SEARCH_ESTIMATE_WORK_MEM and SEARCH_ESTIMATE_RANDOM_PAGE_COST (set_config(..., true) lasts
    until that transaction ends, so a caller's own transaction keeps its settings)."""
    if not capped or connections[using].in_atomic_block:
        with connections[using].cursor() as db:
            yield db
        return
    with transaction.atomic(using=using), connections[using].cursor() as db:
        db.execute(
            "SELECT set_config('work_mem', %s, true), set_config('random_page_cost', %s, true)",
            [settings.SEARCH_ESTIMATE_WORK_MEM, str(settings.SEARCH_ESTIMATE_RANDOM_PAGE_COST)],
        )
        yield db


class PostgresEngine:
    name = "postgres"

    def search(self, request: SearchRequest, *, using: str) -> EnginePage:
        condition = compile_filter(
            request.query, project_id=request.project_id, dataset_id=request.dataset_id, using=using
        )
        for facet in request.facets:  # a 400 before any statement runs
            facet_metadata_path(facet, request.catalog)
        value_type = request.sort.value_type(request.catalog)
        key = sort_key(request.sort, request.catalog, request.project_id)
        keyset = _keyset(request, value_type, nullable=request.sort.field != "created_at")
        direction = "DESC" if request.sort.descending else "ASC"
        key = key or SortKey("", "NULL", [])
        order = f"s.k {direction} NULLS LAST, s.id {direction}" if key.expression != "NULL" else f"s.id {direction}"
        facets, sampled = {}, False
        with connections[using].cursor() as db:
            db.execute(
                f"SELECT s.id, s.k FROM (SELECT d.id, {key.expression} AS k FROM {tables.DATAROW} AS d "
                f"{key.join} WHERE {condition.sql}) AS s WHERE {keyset.sql} ORDER BY {order} LIMIT %s",
                [*key.params, *condition.params, *keyset.params, request.limit + 1],
            )
            keys = db.fetchall()
        if request.facets:
            total, facets, sampled = self._total_and_facets(using, request, condition)
        elif request.after is None and len(keys) <= request.limit:
            total = SearchTotal(len(keys), "eq")  # the first page holds every match
        else:
            total = self._total(using, request, condition)
        page = keys[: request.limit]
        next_after = (_json_value(page[-1][1]), page[-1][0]) if len(keys) > request.limit else None
        return EnginePage([row_id for row_id, _ in page], next_after, total, facets, sampled)

    def statistics(self, request: StatisticsRequest, *, using: str) -> list[dict]:
        return postgres_statistics(
            request.statistics,
            project_id=request.project_id,
            query=request.query,
            dataset_id=request.dataset_id,
            cap=request.max_values,
            using=using,
        )

    @staticmethod
    def _total_and_facets(
        using: str, request: SearchRequest, condition: CompiledQuery
    ) -> tuple[SearchTotal, dict[str, list[dict]], bool]:
        cap = request.estimate_cap if request.count == "estimate" else None
        # Capped statements read at most cap + 1 matches: not worth a second session. Nor is a condition that reads
        # object rows: each session would scan the object table, which costs more than the class facet saves.
        split = (
            cap is None
            and settings.SEARCH_PARALLEL_FACETS
            and can_share_snapshot(using)
            and not reads_object_rows(request.query)
        )
        statements = facets_statements(request.facets, request.catalog, condition, cap, split=split)
        if len(statements) > 1:
            answer = [row for rows in fetch_all_in_one_snapshot(using, statements) for row in rows]
        else:
            with _statement_cursor(using, capped=cap is not None) as db:
                db.execute(statements[0].sql, statements[0].params)
                answer = db.fetchall()
        facets = {facet: [] for facet in request.facets}
        counted = 0
        for index, value, rows in answer:
            if index < 0:
                counted = rows
                continue
            facet = request.facets[index]
            facets[facet].append(
                {"value": orjson.loads(value) if facet.startswith("metadata.") else value, "count": rows}
            )
        if cap is not None and counted > cap:
            return SearchTotal(cap, "gte"), facets, True
        return SearchTotal(counted, "eq"), facets, False

    @staticmethod
    def _total(using: str, request: SearchRequest, condition: CompiledQuery) -> SearchTotal:
        if request.count == "estimate":
            with _statement_cursor(using, capped=True) as db:
                db.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {tables.DATAROW} AS d WHERE {condition.sql} "
                    f"LIMIT %s) AS capped",
                    [*condition.params, request.estimate_cap + 1],
                )
                counted = db.fetchone()[0]
            return SearchTotal(min(counted, request.estimate_cap), "gte" if counted > request.estimate_cap else "eq")
        with connections[using].cursor() as db:
            db.execute(f"SELECT count(*) FROM {tables.DATAROW} AS d WHERE {condition.sql}", condition.params)
            return SearchTotal(db.fetchone()[0], "eq")

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
        condition = compile_filter(query, project_id=project_id, dataset_id=dataset_id, using=using)
        after = 0
        while True:
            with connections[using].cursor() as db:
                db.execute(
                    f"SELECT d.id FROM {tables.DATAROW} AS d WHERE {condition.sql} AND d.id > %s "
                    f"ORDER BY d.id LIMIT %s",
                    [*condition.params, after, batch_size],
                )
                ids = [row[0] for row in db.fetchall()]
            if not ids:
                return
            yield ids
            after = ids[-1]
