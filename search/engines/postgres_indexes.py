"""The per-path metadata indexes: the DDL `manage.py search_metadata_indexes` runs, and whether a schema has them
(the compiler reads that to write conditions those indexes serve)."""

import hashlib
import json

from django.db import connections

from mlops import tables
from search.engines.postgres_sql import TEXT_SEARCH_CONFIG, CompiledQuery, jsonpath_direct, jsonpath_values

_STRING = ' ? (@.type() == "string")'
# Per-path indexes that `manage.py search_metadata_indexes` builds, by the kind of condition they serve: the
# function giving the value held directly at the path (search/migrations/0002, 0003) and the index over it.
_DIRECT_VALUE = {"datetime": "search_metadata_datetime", "match": "search_metadata_string"}
_DIRECT_INDEX = {
    "datetime": "btree ((search_metadata_datetime(metadata, %s::jsonpath)))",
    "match": f"gin ((to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, "
    f"coalesce(search_metadata_string(metadata, %s::jsonpath), ''))))",
}


def _path_index_name(kind: str, path: tuple[str, ...], *, lists: bool = False) -> str:
    suffix = hashlib.sha1(json.dumps(path).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"datarow_metadata_{kind}_{'lists_' if lists else ''}{suffix}"


def lists_predicate(kind: str, path: tuple[str, ...], column: str = "metadata") -> CompiledQuery:
    """The rows whose values at the path must be read from lists (no direct value, but strings reached through
    lists): the lists index's predicate, and the condition that selects its rows (written alike, so the planner
    proves the one from the other)."""
    return CompiledQuery(
        f"{_DIRECT_VALUE[kind]}({column}, %s::jsonpath) IS NULL AND {column} @? %s::jsonpath",
        [jsonpath_direct(path), jsonpath_values(path) + _STRING],
    )


def metadata_path_indexes(kind: str, path: tuple[str, ...]) -> list[CompiledQuery]:
    """The indexes that make `kind` conditions ("datetime" comparisons or "match") on one metadata path index scans:
    the value held directly at the path, and the (few) rows whose values must be read from lists. Named after the
    path, created if missing, without blocking writes."""
    lists = lists_predicate(kind, path)
    return [
        CompiledQuery(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_path_index_name(kind, path)} "
            f"ON {tables.DATAROW} USING {_DIRECT_INDEX[kind]}",
            [jsonpath_direct(path)],
        ),
        CompiledQuery(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_path_index_name(kind, path, lists=True)} "
            f"ON {tables.DATAROW} (id) WHERE {lists.sql}",
            lists.params,
        ),
    ]


def path_index_state(kind: str, path: tuple[str, ...], using: str) -> tuple[bool, bool]:
    """Whether the schema has a valid direct index of `kind` on the path, and whether any datarow may hold the
    path's values in lists: answered from the (small) lists index when it exists and is valid; without it, assumed,
    since the answer would cost a scan of the table."""
    lists = lists_predicate(kind, path)
    valid = (
        "EXISTS (SELECT 1 FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid WHERE c.relname = %s "
        "AND c.relnamespace = current_schema()::regnamespace AND i.indisvalid)"
    )
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT {valid}, CASE WHEN {valid} THEN EXISTS (SELECT 1 FROM {tables.DATAROW} "
            f"WHERE {lists.sql}) ELSE true END",
            [_path_index_name(kind, path), _path_index_name(kind, path, lists=True), *lists.params],
        )
        return cursor.fetchone()


# An object attribute's typed value (search/migrations/0005), by the attribute catalog's value type
# (datasets.models.ObjectAttribute.ValueType).
ATTRIBUTE_VALUE = {
    "boolean": "search_attribute_boolean",
    "number": "search_attribute_number",
    "enum": "search_attribute_string",
}


def attribute_value(value_type: str, column: str) -> str:
    """The typed value of the attribute named by the next bound parameter, in the labels' `column`."""
    return f"{ATTRIBUTE_VALUE[value_type]}({column}, %s::text)"


def attribute_lists(column: str = "attributes") -> str:
    """The labels holding a list under the attribute named by the next bound parameter: the lists index's predicate,
    and the condition that selects its rows (written alike, so the planner proves the one from the other)."""
    return f"jsonb_typeof({column} -> %s::text) = 'array'"


def _attribute_index_name(value_type: str | None, name: str) -> str:
    suffix = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:12]
    return f"label_attribute_{value_type or 'lists'}_{suffix}"  # and the value's statistics: `<type>_stats`


def attribute_indexes(value_type: str, name: str) -> list[CompiledQuery]:
    """The indexes that answer same-object conditions on a catalog attribute, and the (few) labels holding a list
    there, whose values are read from the JSON. A boolean gets one partial index per value on (class, datarow) with
    the area included: index-only scans, which an index on the typed expression cannot give (the planner wants every
    column the query reads from the index, and the expression reads `attributes`). A number or an enum gets its typed
    value, then the class and the datarow (so a value and a class give datarows in order). Named after the attribute,
    created if missing, without blocking writes."""
    value = attribute_value(value_type, "attributes")
    if value_type == "boolean":
        typed = [
            CompiledQuery(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_attribute_index_name(f'boolean_{held.lower()}', name)} "
                f"ON {tables.LABEL} (ontology_class_id, datarow_id) INCLUDE (area) WHERE {value} IS {held}",
                [name],
            )
            for held in ("TRUE", "FALSE")
        ]
    else:
        typed = [
            CompiledQuery(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_attribute_index_name(value_type, name)} ON {tables.LABEL} "
                f"({value}, ontology_class_id, datarow_id) INCLUDE (area) WHERE {value} IS NOT NULL",
                [name, name],
            )
        ]
    return [
        *typed,
        CompiledQuery(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_attribute_index_name(None, name)} ON {tables.LABEL} (id) "
            f"WHERE {attribute_lists()}",
            [name],
        ),
        # Statistics of the typed value (the next ANALYZE gathers them): without them the planner guesses a partial
        # index's share of the rows and counts through a scan of the label table (bench/HISTORY.md, issue 21).
        CompiledQuery(
            f"CREATE STATISTICS IF NOT EXISTS {_attribute_index_name(f'{value_type}_stats', name)} ON ({value}) "
            f"FROM {tables.LABEL}",
            [name],
        ),
    ]


def label_attribute_state(project_id: int, name: str, using: str) -> tuple[str, bool] | None:
    """The catalog's value type of the project's label attribute `name` (None when the catalog has none), and whether
    any label may hold a list there: answered from the lists index when it exists and is valid, else assumed."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace AND i.indisvalid)",
            [_attribute_index_name(None, name)],
        )
        indexed = cursor.fetchone()[0]
        lists = f"EXISTS (SELECT 1 FROM {tables.LABEL} WHERE {attribute_lists()})" if indexed else "true"
        cursor.execute(
            f"SELECT value_type, {lists} FROM {tables.OBJECT_ATTRIBUTE} WHERE project_id = %s AND name = %s",
            [name, project_id, name] if indexed else [project_id, name],
        )
        return cursor.fetchone()
