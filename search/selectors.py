"""Search a project's datarows with the query language on PostgreSQL: one keyset page, a total and facets.

Reads only. Every statement runs on the alias the router gives reads (the reader unless this request wrote), in
the tenant schema the connection is set to, and is built from the engine's bound-parameter condition.
"""

import time
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import connections, router

from datasets.models import DataRow, FieldCatalogEntry
from datasets.selectors import dataset_get
from mlops.exceptions import ApplicationError
from projects.selectors import project_get
from search.engines.postgres import CompiledQuery, compile_filter, jsonpath_values
from search.ql import parse, validate
from tenancy.principal import Principal

# A leading "-" sorts descending; id breaks ties, so every sort is a total order a keyset can resume.
SORTS = ("id", "-id", "created_at", "-created_at")
# An estimate counts at most this many matches: enough to say "more than 10,000" without scanning them all.
ESTIMATE_CAP = 10_000
FACET_SIZE = 20
FACET_OBJECT_TABLES = {"label.class": "datasets_label", "prediction.class": "predictions_prediction"}
FACET_METADATA_TYPES = ("string", "boolean", "number")


@dataclass(frozen=True)
class SearchCursor:
    """Where a page ended, for one sort: its last row's sort key (a datetime for created_at, None for id) and id."""

    sort: str
    after_value: datetime | None
    after_id: int


@dataclass(frozen=True)
class SearchTotal:
    value: int
    relation: str  # "eq": the exact count; "gte": at least value


@dataclass(frozen=True)
class SearchResult:
    results: list[DataRow]
    next_cursor: SearchCursor | None
    total: SearchTotal
    facets: dict[str, list[dict]]
    took_ms: int


def _catalog(project_id: int, using: str) -> dict[str, str]:
    # The catalog is the datasets app's table, read the way the import service reads it.
    return dict(FieldCatalogEntry.objects.using(using).filter(project_id=project_id)
                .values_list("path", "field_type"))


def _facet_statement(facet: str, catalog: dict[str, str], condition: CompiledQuery) -> CompiledQuery:
    """The statement counting, per value of `facet`, the datarows meeting `condition` that have it (top FACET_SIZE).
    DISTINCT: a row that holds a value twice (a list, two labels of a class) counts once."""
    order = f"ORDER BY 2 DESC, 1 LIMIT {FACET_SIZE}"
    if facet == "tags":
        return CompiledQuery(f"SELECT tag, count(DISTINCT d.id) FROM datasets_datarow AS d "
                             f"CROSS JOIN unnest(d.tags) AS tag WHERE {condition.sql} GROUP BY tag {order}",
                             condition.params)
    if facet in FACET_OBJECT_TABLES:
        return CompiledQuery(f"SELECT c.name, count(DISTINCT o.datarow_id) FROM {FACET_OBJECT_TABLES[facet]} AS o "
                             f"JOIN datasets_ontologyclass AS c ON c.id = o.ontology_class_id "
                             f"WHERE o.datarow_id IN (SELECT d.id FROM datasets_datarow AS d WHERE {condition.sql}) "
                             f"GROUP BY c.name {order}", condition.params)
    path = facet.removeprefix("metadata.")
    if not facet.startswith("metadata.") or catalog.get(path) not in FACET_METADATA_TYPES:
        raise ApplicationError(f"Cannot facet on {facet!r}: use label.class, prediction.class, tags or a string, "
                               f"boolean or number metadata path of the project.",
                               {"fields": {"facets": [f"{facet!r} is not a facet field"]}})
    # Every value at the path, lists included, as conditions see them ("any element"); the path is bound first.
    return CompiledQuery(f"SELECT v.value, count(DISTINCT d.id) FROM datasets_datarow AS d "
                         f"CROSS JOIN LATERAL jsonb_path_query(d.metadata, %s::jsonpath) AS v(value) "
                         f"WHERE jsonb_typeof(v.value) IN ('string', 'number', 'boolean') AND {condition.sql} "
                         f"GROUP BY v.value {order}", [jsonpath_values(tuple(path.split("."))), *condition.params])


def _keyset(sort: str, cursor: SearchCursor | None) -> tuple[str, list]:
    if cursor is None:
        return "", []
    if cursor.sort != sort:
        raise ApplicationError("This cursor belongs to another sort; start again without a cursor.",
                               {"fields": {"cursor": ["cursor of another sort"]}})
    comparison = "<" if sort.startswith("-") else ">"
    if sort.removeprefix("-") == "id":
        return f" AND d.id {comparison} %s", [cursor.after_id]
    return f" AND (d.created_at, d.id) {comparison} (%s, %s)", [cursor.after_value, cursor.after_id]


def search_datarows(*, principal: Principal, project_id: int, query_text: str, dataset_id: int | None = None,
                    limit: int = 50, sort: str = "id", cursor: SearchCursor | None = None,
                    count: str = "exact", facets: tuple[str, ...] = ()) -> SearchResult:
    """One page of the project's (or one dataset's) datarows matching `query_text` (empty: all), in `sort` order
    (one of SORTS) after `cursor`, with the total ("exact", or "estimate": exact up to ESTIMATE_CAP) and the
    counts of each facet's values."""
    started = time.monotonic()
    using = router.db_for_read(DataRow)
    project = project_get(principal=principal, project_id=project_id)
    if dataset_id is not None:
        dataset_get(project=project, dataset_id=dataset_id)
    catalog = _catalog(project.pk, using)
    query = validate(parse(query_text), catalog=catalog, text=query_text) if query_text.strip() else None
    condition = compile_filter(query, project_id=project.pk, dataset_id=dataset_id, using=using)
    facet_statements = {facet: _facet_statement(facet, catalog, condition) for facet in facets}
    keyset, keyset_params = _keyset(sort, cursor)
    by_created_at = sort.removeprefix("-") == "created_at"
    direction = "DESC" if sort.startswith("-") else "ASC"
    order = f"d.created_at {direction}, d.id {direction}" if by_created_at else f"d.id {direction}"
    with connections[using].cursor() as db:
        db.execute(f"SELECT d.id, d.created_at FROM datasets_datarow AS d WHERE {condition.sql}{keyset} "
                   f"ORDER BY {order} LIMIT %s", [*condition.params, *keyset_params, limit + 1])
        keys = db.fetchall()
        if count == "estimate":
            db.execute(f"SELECT count(*) FROM (SELECT 1 FROM datasets_datarow AS d WHERE {condition.sql} "
                       f"LIMIT %s) AS capped", [*condition.params, ESTIMATE_CAP + 1])
            counted = db.fetchone()[0]
            total = SearchTotal(min(counted, ESTIMATE_CAP), "gte" if counted > ESTIMATE_CAP else "eq")
        else:
            db.execute(f"SELECT count(*) FROM datasets_datarow AS d WHERE {condition.sql}", condition.params)
            total = SearchTotal(db.fetchone()[0], "eq")
        facet_counts = {}
        for facet, statement in facet_statements.items():
            db.execute(statement.sql, statement.params)
            # Django's connection hands jsonb back as text: metadata values are decoded, names are text already.
            decode = orjson.loads if facet.startswith("metadata.") else str
            facet_counts[facet] = [{"value": decode(value), "count": rows} for value, rows in db.fetchall()]
    page = keys[:limit]
    by_id = DataRow.objects.using(using).in_bulk([row_id for row_id, _ in page])
    last_id, last_created_at = (page[-1] if page else (None, None))
    next_cursor = SearchCursor(sort, last_created_at if by_created_at else None, last_id) \
        if len(keys) > limit else None
    return SearchResult([by_id[row_id] for row_id, _ in page], next_cursor, total, facet_counts,
                        round((time.monotonic() - started) * 1000))
