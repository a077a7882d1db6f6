"""The PostgreSQL engine gives exactly the reference evaluator's ids, on random queries over random data."""

import pytest
from hypothesis import HealthCheck, given, settings

from search.engines.postgres_compiler import reads_object_rows
from search.ql import parse, validate
from tests.conftest import TENANT_A
from tests.search import reference
from tests.search.postgres_queries import compile_query
from tests.search.render import to_text
from tests.search.strategies import queries

# Reads only: the data is committed once per module by the search_data fixture.
pytestmark = pytest.mark.django_db

ISSUE_EXAMPLES = [
    "metadata.capture.gps.lat > 40",
    "metadata.capture.time >= '2024-05-01' AND metadata.capture.time < '2024-05-02T00:00:00Z'",
    "tags = 'night' AND NOT tags IN ('city', 'highway')",
    "label(class = 'vehicle/car')",
    "label(class UNDER 'vehicle' AND area > 1000 AND attributes.occluded = true)",
    "COUNT(label WHERE class UNDER 'vehicle') >= 3",
    "COUNT(label WHERE class = 'person') = 0",
    "prediction(model = 'yolo@1' AND class = 'vehicle/car' AND score >= 0.5)",
    "prediction(model = 'yolo@1') AND prediction(model IN ('yolo@2', 'detr@1') AND score < 0.3)",
    "label(class = 'vehicle/car') AND NOT prediction(model = 'yolo@1' AND class = 'vehicle/car')",
    "MATCH(metadata.caption, 'red car')",
    "metadata.weather != 'rain'",
    "metadata.weather NOT IN ('rain', 'sun')",
    "metadata.weather IS NULL OR width IS NULL",
    "metadata.objects_seen = 'car' AND metadata.people.age BETWEEN 18 AND 65",
    "external_id LIKE 'img-0_5' OR uri LIKE 's3://bucket/c\\_d/%'",
    'metadata."odd ""key"" x" LIKE \'r%\'',
    "(width >= 640 OR height < 300) AND metadata.night = false",
]


def test_issue_examples_agree_with_the_reference(search_data, postgres_ids):
    nonempty = 0
    for text in ISSUE_EXAMPLES:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        expected = reference.datarow_ids(query, search_data.rows)
        assert postgres_ids(query, search_data.project_id) == expected, text
        nonempty += bool(expected)
    # the data is rich enough that most examples select something
    assert nonempty >= len(ISSUE_EXAMPLES) - 3


IN_SLICE_EXAMPLES = [
    "IN SLICE 'picked'",
    "IN SLICE 'rainy frozen' AND NOT IN SLICE 'picked'",
    "IN SLICE 'rainy live' OR width = 640",
    "IN SLICE 'first live' AND label(class UNDER 'vehicle')",
    "IN SLICE 'picked or rainy' AND NOT IN SLICE 'rainy frozen'",
]


def test_in_slice_agrees_with_the_reference(search_data, postgres_ids):
    for text in IN_SLICE_EXAMPLES:
        query = validate(parse(text), catalog=search_data.catalog, text=text, slices=search_data.slices)
        expected = reference.datarow_ids(query, search_data.rows)
        assert expected, text
        assert postgres_ids(query, search_data.project_id) == expected, text
    # the frozen and the live slice of one query hold the same rows while the data does not change
    frozen, live = (
        validate(parse(f"IN SLICE '{name}'"), catalog=search_data.catalog, text="x", slices=search_data.slices)
        for name in ("rainy frozen", "rainy live")
    )
    assert postgres_ids(frozen, search_data.project_id) == postgres_ids(live, search_data.project_id)


# `{run}` is yolo@1's first run; `model = 'yolo@1'` names its latest (conftest.EVALUATION_RUNS).
EVALUATION_EXAMPLES = [
    "evaluation(model = 'yolo@1' AND outcome = 'fn' AND class = 'vehicle/car')",
    "evaluation(run = {run} AND outcome IN ('fp', 'fn') AND class UNDER 'vehicle' AND score > 0.3)",
    "evaluation(run = {run} AND side = 'label' AND iou BETWEEN 0.1 AND 0.5)",
    "evaluation(run = {run} AND outcome = 'fn' AND class UNDER 'vehicle' AND predicted_class = 'person')",
    "evaluation(run = {run} AND side = 'label' AND NOT predicted_class = 'vehicle')",
    "label(class = 'person') AND NOT evaluation(model = 'yolo@1' AND class = 'person' AND outcome = 'tp')",
    "COUNT(evaluation WHERE model = 'detr@1' AND outcome IN ('tp', 'fn')) >= 2",
    "COUNT(evaluation WHERE run = {run} AND outcome = 'fn') = 0 AND label(class UNDER 'vehicle')",
]


def _first_run(search_data) -> int:
    return min(run for run, status in search_data.evaluation_runs.statuses.items() if status == "succeeded")


def _validated(search_data, text: str):
    return validate(parse(text), catalog=search_data.catalog, text=text, evaluation_runs=search_data.evaluation_runs)


def evaluation_examples(search_data) -> list:
    texts = [example.format(run=_first_run(search_data)) for example in EVALUATION_EXAMPLES]
    return [(text, _validated(search_data, text)) for text in texts]


def test_evaluation_examples_agree_with_the_reference(search_data, postgres_ids):
    for text, query in evaluation_examples(search_data):
        expected = reference.datarow_ids(query, search_data.rows)
        assert 0 < len(expected) < len(search_data.rows), text
        assert postgres_ids(query, search_data.project_id) == expected, text
    # a model names its latest succeeded run, whose matches are not the first run's
    by_model = _validated(search_data, EVALUATION_EXAMPLES[0])
    by_first_run = _validated(
        search_data, EVALUATION_EXAMPLES[0].replace("model = 'yolo@1'", f"run = {_first_run(search_data)}")
    )
    assert by_model.root.condition.items[0].value.value == search_data.evaluation_runs.latest["yolo@1"]
    assert postgres_ids(by_model, search_data.project_id) != postgres_ids(by_first_run, search_data.project_id)


def test_compiled_without_a_connection_the_lookups_are_subqueries_with_the_same_answers(search_data, django_db_blocker):
    """datarow_ids binds the ids it reads first; compile_query alone leaves them to subqueries: same rows."""
    from django.db import connection

    from tenancy.context import tenant_scope

    for text in ISSUE_EXAMPLES:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        compiled = compile_query(query, project_id=search_data.project_id)
        with django_db_blocker.unblock(), tenant_scope(TENANT_A), connection.cursor() as cursor:
            cursor.execute(compiled.sql, compiled.params)
            assert [row[0] for row in cursor.fetchall()] == reference.datarow_ids(query, search_data.rows), text
    text = "label(class = 'vehicle/car')"
    compiled = compile_query(
        validate(parse(text), catalog=search_data.catalog, text=text), project_id=search_data.project_id
    )
    assert "SELECT id FROM datasets_ontologyclass" in compiled.sql


def test_dataset_scope_keeps_to_one_dataset(search_data, postgres_ids):
    query = validate(parse("uri LIKE 's3://%'"), catalog=search_data.catalog, text="uri LIKE 's3://%'")
    first = search_data.dataset_ids[0]
    expected = sorted(row["id"] for row in search_data.rows if row["dataset_id"] == first)
    assert postgres_ids(query, search_data.project_id, first) == expected


def test_values_are_bound_parameters_never_sql_text(search_data):
    text = "metadata.weather = 'x''; DROP TABLE datasets_datarow; --' AND label(attributes.\"a'b\" = 'c')"
    compiled = compile_query(
        validate(parse(text), catalog=search_data.catalog, text=text), project_id=search_data.project_id
    )
    assert "DROP" not in compiled.sql and "a'b" not in compiled.sql
    assert any("DROP TABLE" in str(param) for param in compiled.params)


def test_random_queries_agree_with_the_reference(search_data, postgres_ids):
    @settings(
        max_examples=400,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(queries(search_data.dataset_ids, tuple(search_data.slices), search_data.run_names))
    def agree(tree):
        text = to_text(tree)
        assert to_text(parse(text)) == text
        query = validate(
            parse(text),
            catalog=search_data.catalog,
            text=text,
            slices=search_data.slices,
            evaluation_runs=search_data.evaluation_runs,
        )
        assert postgres_ids(query, search_data.project_id) == reference.datarow_ids(query, search_data.rows), text

    agree()


@pytest.mark.parametrize("text", ISSUE_EXAMPLES)
def test_examples_render_back_to_an_equivalent_query(text, search_data):
    tree = parse(text)
    assert to_text(parse(to_text(tree))) == to_text(tree)


@pytest.mark.parametrize(
    "text",
    [
        'label(attributes."😀 ""k"" \\ \n" = \'v\\\'\'"\n😀 é \t\')',
        "label(attributes.color IN ('\\\\', '\"', 'a\\u0041', '$', '@', '$.x ? (@ == 1)'))",
        "label(attributes.truncation BETWEEN -1e-300 AND 1e300 OR attributes.truncation = 0.1)",
        "metadata.weather > '😀' OR metadata.weather LIKE '%\\_%' OR MATCH(metadata.caption, '!!! & | <-> :*')",
        "metadata.\"odd \"\"key\"\" x\" IN ('it''s', '\\')",
    ],
)
def test_awkward_keys_and_values_run_and_agree(text, search_data, postgres_ids):
    query = validate(parse(text), catalog=search_data.catalog, text=text)
    assert postgres_ids(query, search_data.project_id) == reference.datarow_ids(query, search_data.rows)


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("label(class = 'vehicle/car')", False),
        ("label(class UNDER 'vehicle') AND tags = 'night'", False),
        ("prediction(model = 'yolo@1' AND class = 'vehicle/car' AND score >= 0.5)", False),
        ("COUNT(label WHERE class = 'person') >= 3", False),
        ("COUNT(label) >= 3", False),
        ("metadata.weather = 'rain' AND width > 100", False),
        ("label(class UNDER 'vehicle' AND area > 1000)", True),
        ("NOT label(attributes.occluded = true)", True),
        ("tags = 'night' OR COUNT(prediction WHERE w > 10) >= 1", True),
        ("prediction(kind = 'box')", True),
        ("evaluation(model = 'yolo@1' AND outcome = 'fn' AND class = 'person' AND iou < 0.5)", False),
        ("COUNT(evaluation WHERE model = 'yolo@1' AND predicted_class = 'person') > 1", False),
        ("evaluation(model = 'yolo@1' AND side = 'label')", True),
    ],
)
def test_a_condition_on_an_object_field_no_index_holds_reads_object_rows(text, reads, search_data):
    query = validate(parse(text), catalog=search_data.catalog, text=text, evaluation_runs=search_data.evaluation_runs)
    assert reads_object_rows(query) is reads
