"""The Elasticsearch engine without a server: golden compiled queries and mapping, and the compiled queries select
exactly the reference evaluator's datarows over the documents the indexer builds from PostgreSQL."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from search.engines.elasticsearch_compiler import compile_query, like_wildcard
from search.engines.elasticsearch_documents import class_ancestors, datarow_document, index_mapping, tree_values
from search.ql import ast, parse, validate
from search.ql.validation import EvaluationRuns, ValidQuery
from tests.conftest import TENANT_A
from tests.search import reference
from tests.search.es_evaluator import Evaluator
from tests.search.render import to_text
from tests.search.strategies import queries
from tests.search.test_fuzz import CATALOG
from tests.search.test_postgres_engine import ISSUE_EXAMPLES, evaluation_examples

GOLDEN = Path(__file__).parent / "golden"
# Every construct of the language, once.
GOLDEN_QUERIES = [
    *ISSUE_EXAMPLES[:14],
    "external_id BETWEEN 'img-010' AND 'img-020' AND uri LIKE 's3://b\\_c/%*?'",
    "created_at > '2024-05-01T12:00:00+02:00' AND dataset IN (1, 2)",
    "width IS NULL AND EXISTS(metadata.night) AND tags IS NOT NULL",
    "label(attributes.occluded IS NULL AND attributes.color LIKE 'r%' AND kind != 'box')",
    "COUNT(prediction) < 2 OR COUNT(label WHERE area >= 10) <= 1 OR COUNT(label) != 0 OR COUNT(label) > 4",
    "prediction(model LIKE 'yolo@%' AND class IN ('car', 'bus') AND x BETWEEN 0 AND 10)",
    "NOT MATCH(metadata.caption, '') OR metadata.people.age <= 18",
]

# The issue's evaluation examples and the other evaluation forms, over runs of their own: 7 is det@2's latest run.
EVALUATION_RUNS = EvaluationRuns({7: "succeeded"}, {"det@2": 7})
EVALUATION_QUERIES = [
    "evaluation(model = 'det@2' AND outcome = 'fn' AND class = 'car')",
    "evaluation(run = 7 AND outcome = 'fp' AND class = 'person' AND score > 0.8)",
    "evaluation(run = 7 AND side = 'label' AND iou BETWEEN 0.1 AND 0.5)",
    "evaluation(run = 7 AND outcome = 'fn' AND class = 'truck' AND predicted_class = 'bus')",
    "COUNT(evaluation WHERE run = 7 AND outcome = 'fn' AND class UNDER 'vehicle') >= 2 OR COUNT(evaluation WHERE "
    "run = 7) = 0",
    "evaluation(run = 7 AND predicted_class IS NULL AND NOT predicted_class UNDER 'vehicle' AND iou IS NOT NULL)",
]


def _golden(name: str, actual) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    assert actual == json.loads(path.read_text()), f"{name} changed; rerun with UPDATE_GOLDEN=1 if that is intended"


def test_compiled_queries_match_the_golden_file():
    compiled = {
        text: compile_query(validate(parse(text), catalog=CATALOG, text=text), dataset_id=3).to_dict()
        for text in GOLDEN_QUERIES
    }
    compiled.update(
        {
            text: compile_query(
                validate(parse(text), catalog=CATALOG, text=text, evaluation_runs=EVALUATION_RUNS), dataset_id=3
            ).to_dict()
            for text in EVALUATION_QUERIES
        }
    )
    _golden("elasticsearch_queries.json", compiled)


def test_mapping_matches_the_golden_file():
    _golden("elasticsearch_mapping.json", index_mapping(CATALOG))


def test_slice_membership_is_a_term_on_slice_ids():
    # validation resolves `IN SLICE 'x'` of an ids slice to this node (the slices app's part)
    tree = ast.Not(ast.SliceMembership(7, ast.Pos(1, 1)), ast.Pos(1, 1))
    compiled = compile_query(ValidQuery(tree, {}, "NOT IN SLICE 'x'")).to_dict()
    assert compiled == {"bool": {"filter": [{"bool": {"must_not": [{"term": {"slice_ids": 7}}]}}]}}
    evaluator = Evaluator(index_mapping({}))
    assert not evaluator.matches(compiled, {"slice_ids": [3, 7]})
    assert evaluator.matches(compiled, {"slice_ids": [3]}) and evaluator.matches(compiled, {})


@pytest.mark.parametrize(
    ("pattern", "wildcard"),
    [
        ("r%", "r*"),
        ("_un", "?un"),
        ("rain\\_x", "rain_x"),
        ("50\\%", "50%"),
        ("a*b?", "a\\*b\\?"),
        ("x\\\\%", "x\\\\*"),
    ],
)
def test_like_patterns_become_wildcards(pattern, wildcard):
    assert like_wildcard(pattern) == wildcard


def test_paths_and_ancestors():
    assert class_ancestors("vehicle/car/sedan") == ["vehicle", "vehicle/car", "vehicle/car/sedan"]
    assert tree_values({"a": [{"b": 1}, {"b": None}, [{"b": 2}]], "c": None, "d": []}) == {
        ("a",): [{"b": 1}, {"b": None}, [{"b": 2}]],
        ("a", "b"): [1],
    }


# --- against the reference, over the documents the indexer builds from the stored datarows


@pytest.fixture(scope="module")
def documents(search_data, django_db_blocker):
    from search.indexing.documents import datarows_by_id
    from tenancy.context import tenant_scope

    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        rows = datarows_by_id(
            project_id=search_data.project_id, datarow_ids=[row["id"] for row in search_data.rows], using="default"
        )
    return [datarow_document(row, search_data.catalog) for row in rows], rows


def _canonical(item: dict, keys: tuple) -> str:
    # jsonb writes the float 341.0 as 341: the same number
    return json.dumps(
        {
            k: float(item[k]) if k in ("x", "y", "w", "h", "area", "score") and item[k] is not None else item[k]
            for k in keys
        },
        sort_keys=True,
    )


@pytest.mark.django_db
def test_the_indexer_reads_the_rows_the_reference_sees(search_data, documents):
    _, rows = documents
    fields = (
        "id",
        "dataset_id",
        "external_id",
        "uri",
        "width",
        "height",
        "created_at",
        "updated_at",
        "metadata",
        "tags",
    )
    by_id = {row["id"]: row for row in search_data.rows}
    assert len(rows) == len(search_data.rows)
    for row in rows:
        expected = by_id[row["id"]]
        assert {name: row[name] for name in fields} == {name: expected[name] for name in fields}
        assert sorted(row["slice_ids"]) == sorted(expected.get("slice_ids", []))
        for kind in ("labels", "predictions"):
            keys = ("class", "kind", "x", "y", "w", "h", "area", "attributes") + (
                ("score", "model") if kind == "predictions" else ()
            )
            assert sorted(_canonical(item, keys) for item in row[kind]) == sorted(
                _canonical(item, keys) for item in expected[kind]
            )
        match_keys = ("run", "side", "outcome", "class", "predicted_class", "iou", "score")
        assert sorted(_canonical(item, match_keys) for item in row["evaluation_matches"]) == sorted(
            _canonical(item, match_keys) for item in expected.get("evaluation_matches", [])
        )


def _es_ids(evaluator: Evaluator, documents: list[dict], query, dataset_id=None) -> list[int]:
    compiled = compile_query(query, dataset_id=dataset_id).to_dict()
    return sorted(document["id"] for document in documents if evaluator.matches(compiled, document))


@pytest.mark.django_db
def test_issue_examples_select_the_reference_rows(search_data, documents):
    docs, _ = documents
    evaluator = Evaluator(index_mapping(search_data.catalog))
    for text in [*ISSUE_EXAMPLES, *GOLDEN_QUERIES[14:]]:
        query = validate(parse(text), catalog=search_data.catalog, text=text)
        assert _es_ids(evaluator, docs, query) == reference.datarow_ids(query, search_data.rows), text
    for text, query in evaluation_examples(search_data):
        assert _es_ids(evaluator, docs, query) == reference.datarow_ids(query, search_data.rows), text
    first = search_data.dataset_ids[0]
    query = validate(parse("tags IS NULL OR NOT label(class UNDER 'vehicle')"), catalog=search_data.catalog, text="")
    assert _es_ids(evaluator, docs, query, first) == reference.datarow_ids(
        query, [row for row in search_data.rows if row["dataset_id"] == first]
    )


@pytest.mark.django_db
def test_random_queries_select_the_reference_rows(search_data, documents):
    docs, _ = documents
    evaluator = Evaluator(index_mapping(search_data.catalog))
    selected = []

    @settings(
        max_examples=400,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(queries(search_data.dataset_ids, runs=search_data.run_names))
    def agree(tree):
        text = to_text(tree)
        query = validate(
            parse(text), catalog=search_data.catalog, text=text, evaluation_runs=search_data.evaluation_runs
        )
        expected = reference.datarow_ids(query, search_data.rows)
        assert _es_ids(evaluator, docs, query) == expected, text
        selected.append(len(expected))

    agree()
    # neither trivially empty nor trivially everything
    assert sum(0 < n < len(docs) for n in selected) > len(selected) // 2
