"""Label attributes in the project's attribute catalog: imports fill it, `manage.py search_attribute_indexes` builds
their typed indexes, and conditions on them give the reference's ids, answered from those indexes."""

import copy
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from hypothesis import HealthCheck, given, settings

from datasets.importers.staging import MAX_ENUM_VALUES, OBJECT_ATTRIBUTES_LEARN
from datasets.models import ObjectAttribute
from search.engines.postgres_compiler import compile_filter
from search.ql import parse, validate
from tests.conftest import TENANT_A
from tests.search import reference
from tests.search.render import to_text
from tests.search.strategies import queries

# Reads only, like the engine's tests: the data and the indexes are committed once per module.
pytestmark = pytest.mark.django_db

ATTRIBUTE_QUERIES = [
    "label(attributes.occluded = true)",
    "label(class UNDER 'vehicle' AND area > 1000 AND attributes.occluded = true)",
    "label(NOT attributes.occluded = true)",
    "label(attributes.occluded != false)",
    "label(attributes.occluded IN (true, false))",
    "label(attributes.color = 'red')",
    "label(attributes.color IN ('Red', 'blue'))",
    "label(attributes.color != 'red' AND attributes.truncation >= 0.25)",
    "label(attributes.truncation BETWEEN 0.25 AND 0.5)",
    "label(attributes.truncation < 0.5) AND NOT label(attributes.occluded = false)",
    "COUNT(label WHERE attributes.occluded = true) >= 2",
    "label(attributes.occluded = 'yes')",  # another type than the catalog's: the JSON
    "label(attributes.color > 'b')",  # an ordered string comparison: the JSON
    "label(attributes.parts = 'red')",  # lists only: not in the catalog
]


@pytest.fixture(scope="module")
def attribute_indexes(search_data, django_db_blocker) -> Iterator[list[str]]:
    """Run the command for tenant A, yield the names of the indexes it made, drop them afterwards."""
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock():
        call_command("search_attribute_indexes", schema=[TENANT_A])
        with tenant_scope(TENANT_A), connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE 'label_attribute_%%' "
                "ORDER BY indexname",
                [TENANT_A],
            )
            names = [row[0] for row in cursor.fetchall()]
    yield names
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            "SELECT stxname FROM pg_statistic_ext WHERE stxnamespace = %s::regnamespace AND stxname LIKE %s",
            [TENANT_A, "label_attribute_%"],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP STATISTICS "{name}"')


def _compiled(search_data, text, django_db_blocker):
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        return compile_filter(
            validate(parse(text), catalog=search_data.catalog, text=text),
            project_id=search_data.project_id,
            using="default",
        )


def _agree(search_data, postgres_ids, rows, texts) -> int:
    """Every query gives the reference's ids over `rows`; returns how many select something."""
    nonempty = 0
    for text in texts:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        expected = reference.datarow_ids(query, rows)
        assert postgres_ids(query, search_data.project_id) == expected, text
        nonempty += bool(expected)
    return nonempty


def test_imports_fill_the_attribute_catalog_with_scalar_attributes(search_data, django_db_blocker):
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        catalog = {
            entry.name: (entry.value_type, entry.enum_values)
            for entry in ObjectAttribute.objects.filter(project_id=search_data.project_id)
        }
    # "parts" holds lists only: it stays out, and its conditions read the JSON
    assert catalog == {
        "occluded": ("boolean", []),
        "color": ("enum", ["Red", "blue", "green", "red"]),
        "truncation": ("number", []),
    }


def test_the_command_indexes_each_attribute_by_its_typed_value_and_its_lists(attribute_indexes, in_tenant_a):
    # occluded: one partial index per value; color and truncation: their typed value; and each one's lists
    assert len(attribute_indexes) == 7
    assert sum("_lists_" in name for name in attribute_indexes) == 3
    assert sum(name.startswith("label_attribute_boolean_") for name in attribute_indexes) == 2
    with connection.cursor() as cursor:  # and statistics of each typed value, for the planner's estimates
        cursor.execute("SELECT count(*) FROM pg_statistic_ext WHERE stxname LIKE 'label_attribute_%%_stats_%%'")
        assert cursor.fetchone()[0] == 3


def test_attribute_conditions_agree_with_the_reference_with_the_indexes(
    search_data, attribute_indexes, postgres_ids, django_db_blocker
):
    assert _agree(search_data, postgres_ids, search_data.rows, ATTRIBUTE_QUERIES) >= len(ATTRIBUTE_QUERIES) - 3
    # No label holds a list under a catalog attribute: the typed value alone, no JSON path
    typed = _compiled(search_data, ATTRIBUTE_QUERIES[1], django_db_blocker)
    assert "search_attribute_boolean" in typed.sql and "jsonpath" not in typed.sql and "IS TRUE" in typed.sql
    for text in ATTRIBUTE_QUERIES[-3:]:
        assert "search_attribute_" not in _compiled(search_data, text, django_db_blocker).sql, text


def test_a_same_object_condition_on_an_attribute_is_answered_from_its_index(
    search_data, attribute_indexes, django_db_blocker
):
    from tenancy.context import tenant_scope

    condition = _compiled(search_data, ATTRIBUTE_QUERIES[1], django_db_blocker)
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(f"EXPLAIN SELECT d.id FROM datasets_datarow AS d WHERE {condition.sql}", condition.params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
    (occluded,) = [name for name in attribute_indexes if name.startswith("label_attribute_boolean_true_")]
    assert occluded in plan, plan


def test_labels_holding_lists_under_a_catalog_attribute_are_found_from_the_json(
    search_data, attribute_indexes, postgres_ids, django_db_blocker
):
    from tenancy.context import tenant_scope

    # given: green labels hold their occlusion and truncation in lists (rolled back after the test)
    rows = copy.deepcopy(search_data.rows)
    for row in rows:
        for label in row["labels"]:
            attributes = label["attributes"]
            if attributes.get("color") == "green":
                for name, other in (("occluded", True), ("truncation", 2)):
                    if name in attributes:
                        attributes[name] = [attributes[name], other]
    with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
        for name, other in (("occluded", "true"), ("truncation", "2")):
            cursor.execute(
                "UPDATE datasets_label SET attributes = jsonb_set(attributes, ARRAY[%s], "
                "jsonb_build_array(attributes -> %s, %s::jsonb)) WHERE attributes ->> 'color' = 'green' AND "
                "attributes ? %s",
                [name, name, other, name],
            )
    # then: the conditions keep a branch for them, and give the same answers
    assert "jsonpath" in _compiled(search_data, ATTRIBUTE_QUERIES[0], django_db_blocker).sql
    _agree(search_data, postgres_ids, rows, ATTRIBUTE_QUERIES)


def test_random_queries_agree_with_the_reference_with_the_attribute_indexes(
    search_data, attribute_indexes, postgres_ids
):
    @settings(
        max_examples=200,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(queries(search_data.dataset_ids, tuple(search_data.slices)))
    def agree(tree):
        text = to_text(tree)
        query = validate(parse(text), catalog=search_data.catalog, text=text, slices=search_data.slices)
        assert postgres_ids(query, search_data.project_id) == reference.datarow_ids(query, search_data.rows), text

    agree()


def _learn(project_id: int, attributes: list[str]) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS import_labels (attributes jsonb)")
        cursor.execute("TRUNCATE import_labels")
        for value in attributes:
            cursor.execute("INSERT INTO import_labels VALUES (%s::jsonb)", [value])
        cursor.execute(OBJECT_ATTRIBUTES_LEARN, {"project": project_id, "most": MAX_ENUM_VALUES})
    return {
        entry.name: (entry.value_type, entry.enum_values)
        for entry in ObjectAttribute.objects.filter(project_id=project_id)
    }


def test_later_imports_extend_an_enum_and_leave_mixed_or_free_attributes_out(project):
    free_text = [f'{{"note": "n{i}"}}' for i in range(MAX_ENUM_VALUES + 1)]
    first = _learn(
        project.pk,
        ['{"side": "left", "mixed": 1, "n": 2.5, "x": null}', '{"side": "right", "mixed": "a"}', *free_text],
    )
    assert first == {"side": ("enum", ["left", "right"]), "n": ("number", [])}
    # a later batch brings a new value, and another type for the number (which keeps its entry)
    second = _learn(project.pk, ['{"side": "front", "n": "many", "ok": true}'])
    assert second == {"side": ("enum", ["front", "left", "right"]), "n": ("number", []), "ok": ("boolean", [])}


def test_the_catalog_command_fills_the_catalog_from_stored_labels(search_data, django_db_blocker):
    from tenancy.context import tenant_scope

    # given: labels stored before the catalog existed (removed here; the test's transaction restores it)
    with tenant_scope(TENANT_A):
        ObjectAttribute.objects.filter(project_id=search_data.project_id).delete()
    # when
    call_command("datasets_attribute_catalog", schema=[TENANT_A])
    # then
    with tenant_scope(TENANT_A):
        catalog = dict(
            ObjectAttribute.objects.filter(project_id=search_data.project_id).values_list("name", "value_type")
        )
    assert catalog == {"occluded": "boolean", "color": "enum", "truncation": "number"}
