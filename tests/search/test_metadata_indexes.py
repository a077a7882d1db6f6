"""Datetime metadata paths indexed by `manage.py search_metadata_indexes`: conditions give the reference's ids
with the indexes in place and the planner can answer them from the indexes."""

import copy

import pytest
from django.core.management import call_command
from django.db import connection

from search.engines import reference
from search.engines.postgres import compile_filter
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


@pytest.fixture(scope="module")
def datetime_indexes(search_data, django_db_blocker):
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock():
        call_command("search_metadata_indexes", schema=[TENANT_A])
        with tenant_scope(TENANT_A), connection.cursor() as cursor:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s "
                           "ORDER BY indexname", [TENANT_A, "datarow_metadata_datetime%"])
            names = [row[0] for row in cursor.fetchall()]
    yield names
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP INDEX "{name}"')


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
    from tenancy.context import tenant_scope

    text = DATETIME_QUERIES[0]
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        condition = compile_filter(validate(parse(text), catalog=search_data.catalog, text=text),
                                   project_id=search_data.project_id, using="default")
        # A few hundred rows: without this the planner rightly prefers reading the table.
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(f"EXPLAIN SELECT d.id FROM datasets_datarow AS d WHERE {condition.sql}", condition.params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
    for name in datetime_indexes:
        assert name in plan, plan


def test_with_no_lists_left_the_index_alone_answers_datetime_conditions(search_data, datetime_indexes, postgres_ids,
                                                                        django_db_blocker):
    from psycopg.types.json import Jsonb

    from tenancy.context import tenant_scope

    # given: every row that held a list of datetimes holds its first one instead (rolled back after the test)
    rows = copy.deepcopy(search_data.rows)
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        for row in rows:
            capture = row["metadata"].get("capture") or {}
            if isinstance(capture.get("time"), list):
                capture["time"] = capture["time"][0]
                cursor.execute("UPDATE datasets_datarow SET metadata = %s WHERE id = %s",
                               [Jsonb(row["metadata"]), row["id"]])
    for text in DATETIME_QUERIES:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        # when
        with django_db_blocker.unblock(), tenant_scope(TENANT_A):
            condition = compile_filter(query, project_id=search_data.project_id, using="default")
        # then: no per-value branch (it would make the planner recheck every row), and the same answer
        assert "jsonb_path_query(" not in condition.sql, text
        assert postgres_ids(query, search_data.project_id) == reference.datarow_ids(query, rows), text


def test_several_conditions_on_one_datetime_path_probe_its_lists_index_once(search_data, datetime_indexes,
                                                                           django_db_blocker):
    from django.test.utils import CaptureQueriesContext

    from tenancy.context import tenant_scope

    text = "metadata.capture.time >= '2024-05-01' AND NOT metadata.capture.time > '2024-05-02'"
    query = validate(parse(text), catalog=search_data.catalog, text=text)
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), CaptureQueriesContext(connection) as queries:
        compile_filter(query, project_id=search_data.project_id, using="default")
    assert sum("pg_index" in q["sql"] for q in queries.captured_queries) == 1
