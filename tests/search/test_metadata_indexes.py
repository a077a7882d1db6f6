"""Datetime metadata paths indexed by `manage.py search_metadata_indexes`: conditions give the reference's ids
with the indexes in place and the planner can answer them from the indexes."""

import copy
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection

from search.engines import reference
from search.engines.postgres_compiler import compile_filter
from search.ql import parse, validate
from tests.conftest import TENANT_A

# Reads only, like the engine's tests: the data and the indexes are committed once per module.
pytestmark = pytest.mark.django_db

DATETIME_QUERIES = [
    "metadata.capture.time BETWEEN '2024-05-01' AND '2024-05-01T23:59:59Z'",
    "metadata.capture.time < '2024-01-01'",  # only in the rows that hold a list of datetimes
    "metadata.capture.time = '2024-05-02'",
    "metadata.capture.time IN ('2024-05-01T10:00:00Z', '2023-12-31T23:59:59Z')",
    "metadata.capture.time != '2024-05-01T10:00:00Z'",
    "NOT metadata.capture.time >= '2024-05-01T09:00:00Z'",
]


def _built_indexes(django_db_blocker, kind: str, **options) -> Iterator[list[str]]:
    """Run the command for tenant A, yield the names of the `kind` indexes it made, drop them afterwards."""
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock():
        call_command("search_metadata_indexes", schema=[TENANT_A], **options)
        with tenant_scope(TENANT_A), connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s ORDER BY indexname",
                [TENANT_A, f"datarow_metadata_{kind}%"],
            )
            names = [row[0] for row in cursor.fetchall()]
    yield names
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP INDEX "{name}"')


def _compiled(search_data, text, django_db_blocker):
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        return compile_filter(
            validate(parse(text), catalog=search_data.catalog, text=text),
            project_id=search_data.project_id,
            using="default",
        )


def _plan(condition, django_db_blocker) -> str:
    """EXPLAIN of the ids matching `condition`, with sequential scans off: over a few hundred rows the planner
    rightly prefers reading the table, and the question is whether the indexes can answer."""
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(f"EXPLAIN SELECT d.id FROM datasets_datarow AS d WHERE {condition.sql}", condition.params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")


@pytest.fixture(scope="module")
def datetime_indexes(search_data, django_db_blocker):
    yield from _built_indexes(django_db_blocker, "datetime")


def test_the_command_indexes_each_datetime_path_directly_and_its_lists(search_data, datetime_indexes):
    datetime_paths = [path for path, kind in search_data.catalog.items() if kind == "datetime"]
    assert datetime_paths == ["capture.time"]
    assert len(datetime_indexes) == 2 and any("_lists_" in name for name in datetime_indexes)


def test_datetime_conditions_agree_with_the_reference_with_the_indexes(search_data, datetime_indexes, postgres_ids):
    lists = [row for row in search_data.rows if isinstance((row["metadata"].get("capture") or {}).get("time"), list)]
    assert lists  # the fallback branch has rows to find
    for text in DATETIME_QUERIES:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        assert postgres_ids(query, search_data.project_id) == reference.datarow_ids(query, search_data.rows), text


def test_a_datetime_range_can_be_answered_from_the_indexes(search_data, datetime_indexes, django_db_blocker):
    plan = _plan(_compiled(search_data, DATETIME_QUERIES[0], django_db_blocker), django_db_blocker)
    for name in datetime_indexes:
        assert name in plan, plan


def test_with_no_lists_left_the_index_alone_answers_datetime_conditions(
    search_data, datetime_indexes, postgres_ids, django_db_blocker
):
    from psycopg.types.json import Jsonb

    from tenancy.context import tenant_scope

    # given: every row that held a list of datetimes holds its first one instead (rolled back after the test)
    rows = copy.deepcopy(search_data.rows)
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        for row in rows:
            capture = row["metadata"].get("capture") or {}
            if isinstance(capture.get("time"), list):
                capture["time"] = capture["time"][0]
                cursor.execute(
                    "UPDATE datasets_datarow SET metadata = %s WHERE id = %s", [Jsonb(row["metadata"]), row["id"]]
                )
    for text in DATETIME_QUERIES:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        # when
        condition = _compiled(search_data, text, django_db_blocker)
        # then: no per-value branch (it would make the planner recheck every row), and the same answer
        assert "jsonb_path_query(" not in condition.sql, text
        assert postgres_ids(query, search_data.project_id) == reference.datarow_ids(query, rows), text


def test_several_conditions_on_one_datetime_path_probe_its_lists_index_once(
    search_data, datetime_indexes, django_db_blocker
):
    from django.test.utils import CaptureQueriesContext

    from tenancy.context import tenant_scope

    text = "metadata.capture.time >= '2024-05-01' AND NOT metadata.capture.time > '2024-05-02'"
    query = validate(parse(text), catalog=search_data.catalog, text=text)
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), CaptureQueriesContext(connection) as queries:
        compile_filter(query, project_id=search_data.project_id, using="default")
    assert sum("pg_index" in q["sql"] for q in queries.captured_queries) == 1


MATCH_QUERIES = [
    "MATCH(metadata.caption, 'red car')",
    "MATCH(metadata.caption, 'CAR')",
    "NOT MATCH(metadata.caption, 'red')",
    "MATCH(metadata.caption, '!!! & | <-> :*')",  # no words: matches nothing, and NOT of it everything
    "NOT MATCH(metadata.caption, '!!!')",
    "MATCH(metadata.objects_seen, 'car') OR MATCH(metadata.caption, 'blue')",  # objects_seen holds lists
]


@pytest.fixture(scope="module")
def match_indexes(search_data, django_db_blocker):
    # "night" is a boolean path: named, but not a string in the catalog, so left alone.
    yield from _built_indexes(django_db_blocker, "match", text=["caption", "objects_seen", "night"])


def test_the_command_indexes_the_named_string_paths_for_match(search_data, match_indexes):
    assert search_data.catalog["night"] == "boolean"
    # caption and objects_seen: a full-text index of the string held there, and a lists index, each
    assert len(match_indexes) == 4 and sum("_lists_" in name for name in match_indexes) == 2


def test_match_conditions_agree_with_the_reference_with_the_indexes(search_data, match_indexes, postgres_ids):
    assert any(isinstance(row["metadata"].get("objects_seen"), list) for row in search_data.rows)
    for text in MATCH_QUERIES:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        ids = postgres_ids(query, search_data.project_id)
        assert ids == reference.datarow_ids(query, search_data.rows), text
    assert postgres_ids(
        validate(parse(MATCH_QUERIES[0]), catalog=search_data.catalog, text=MATCH_QUERIES[0]), search_data.project_id
    )  # the data has matches to find


def test_match_on_a_path_holding_only_strings_is_answered_by_its_index(search_data, match_indexes, django_db_blocker):
    caption = _compiled(search_data, MATCH_QUERIES[0], django_db_blocker)
    # No per-candidate tokenizing and no per-value subquery: the index expression alone.
    assert "jsonb_path_query" not in caption.sql and "search_metadata_string" in caption.sql
    plan = _plan(caption, django_db_blocker)
    direct = [name for name in match_indexes if "_lists_" not in name]
    assert sum(name in plan for name in direct) == 1, plan
    # objects_seen holds lists: its condition keeps the per-value branch for those rows.
    assert "jsonb_path_query(" in _compiled(search_data, "MATCH(metadata.objects_seen, 'car')", django_db_blocker).sql


def test_match_without_a_path_index_keeps_the_whole_tree_candidates(search_data, django_db_blocker):
    compiled = _compiled(search_data, "MATCH(metadata.people.name, 'ann')", django_db_blocker)
    assert "search_metadata_string" not in compiled.sql and "jsonb_to_tsvector" in compiled.sql
