"""Parsing and validation: every construct, error positions with carets, suggestions, type errors, limits."""

import pytest

from search.ql import QueryError, ast, parse, validate
from search.ql.limits import DEFAULT_LIMITS
from search.ql.parser import MAX_OBJECT_CONDITIONS
from search.ql.validation import EvaluationRuns, SliceDefinition
from tests.search.render import to_text

MAX_QUERY_CHARS = DEFAULT_LIMITS.max_query_chars
MAX_DEPTH = DEFAULT_LIMITS.max_depth
MAX_IN_VALUES = DEFAULT_LIMITS.max_in_values

CATALOG = {
    "weather": "string",
    "capture.gps.lat": "number",
    "capture.time": "datetime",
    "night": "boolean",
    "caption": "string",
    "weird key": "string",
    "and": "number",
}


def check(text: str) -> ast.Expr:
    return validate(parse(text), catalog=CATALOG, text=text).root


def error_of(text: str) -> QueryError:
    with pytest.raises(QueryError) as raised:
        check(text)
    return raised.value


def test_comparisons_build_typed_nodes_with_positions():
    tree = check("metadata.capture.gps.lat >= 40.5")
    assert tree == ast.Compare(
        ast.Field(("metadata", "capture", "gps", "lat"), ast.Pos(1, 1)),
        ">=",
        ast.Value(40.5, ast.Pos(1, 29)),
        ast.Pos(1, 1),
    )


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("width = 640", "width = 640"),
        ("width <> 640", "width != 640"),
        ("external_id < 'b'", "external_id < 'b'"),
        ("uri like 's3://%'", "uri LIKE 's3://%'"),
        ("uri NOT LIKE 's3://%'", "NOT (uri LIKE 's3://%')"),
        ("height IN (1, 2.5)", "height IN (1, 2.5)"),
        ("height NOT IN (1)", "NOT (height IN (1))"),
        ("created_at BETWEEN '2024-01-01' AND '2024-02-01'", "created_at BETWEEN '2024-01-01' AND '2024-02-01'"),
        (
            "created_at NOT BETWEEN '2024-01-01' AND '2024-02-01'",
            "NOT (created_at BETWEEN '2024-01-01' AND '2024-02-01')",
        ),
        ("width IS NULL", "NOT (width IS NOT NULL)"),
        ("EXISTS(metadata.weather)", "metadata.weather IS NOT NULL"),
        ("dataset = 3", "dataset = 3"),
        ("tags = 'night'", "tags = 'night'"),
        ("metadata.night = TRUE", "metadata.night = true"),
        ("metadata.\"weird key\" = 'it''s'", "metadata.\"weird key\" = 'it''s'"),
        ("metadata.and > 1", "metadata.and > 1"),
        ("MATCH(metadata.caption, 'red car')", "MATCH(metadata.caption, 'red car')"),
        ("label(class = 'car')", "label(class = 'car')"),
        (
            "LABEL(class UNDER 'vehicle' AND area > 1000 AND attributes.occluded = true)",
            "label(class UNDER 'vehicle' AND area > 1000 AND attributes.occluded = true)",
        ),
        ("COUNT(label WHERE class = 'car') >= 3", "COUNT(label WHERE class = 'car') >= 3"),
        ("count(prediction) = 0", "COUNT(prediction) = 0"),
        (
            "prediction(model = 'yolo@8.1' AND class = 'car' AND score >= 0.5)",
            "prediction(model = 'yolo@8.1' AND class = 'car' AND score >= 0.5)",
        ),
        (
            "label(class='car') AND NOT prediction(model='X@1' AND class='car')",
            "label(class = 'car') AND NOT (prediction(model = 'X@1' AND class = 'car'))",
        ),
    ],
)
def test_every_construct_parses_to_its_canonical_text(text, canonical):
    assert to_text(check(text)) == canonical
    assert to_text(check(canonical)) == canonical


def test_and_binds_tighter_than_or_and_not_tighter_than_and():
    tree = check("width = 1 OR NOT width = 2 AND height = 3")
    assert isinstance(tree, ast.Or)
    assert isinstance(tree.items[1], ast.And)
    assert isinstance(tree.items[1].items[0], ast.Not)
    assert to_text(check("(width = 1 OR width = 2) AND height = 3")) == "(width = 1 OR width = 2) AND height = 3"


def test_between_takes_its_own_and():
    tree = check("width BETWEEN 1 AND 2 AND height = 3")
    assert isinstance(tree, ast.And) and isinstance(tree.items[0], ast.Between)


def test_error_has_line_column_and_caret():
    error = error_of("width = 1 AND\n  height = = 2")
    assert (error.line, error.column) == (2, 12)
    assert error.caret() == "  height = = 2\n           ^"
    assert error.render().startswith("line 2, column 12: unexpected '='")
    assert error.extra == {"line": 2, "column": 12, "caret": error.caret()}


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("width = ", 9, "the query ends too early"),
        ("width = 'open", 9, "unexpected character"),
        ("width = 1 height", 11, "unexpected 'height'"),
        ("width ~ 1", 7, "unexpected character '~'"),
        ("label(class = 'car'", 20, "the query ends too early"),
        ("", 1, "the query is empty"),
    ],
)
def test_syntax_errors_point_at_the_spot(text, column, message):
    error = error_of(text)
    assert error.column == column
    assert message in error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.wether = 'rain'", "unknown field 'metadata.wether'; did you mean 'metadata.weather'?"),
        ("widht > 3", "unknown field 'widht'; did you mean 'width'?"),
        ("label(clas = 'car')", "unknown label field 'clas'; did you mean 'class'?"),
        ("prediction(scor > 0.5)", "unknown prediction field 'scor'; did you mean 'score'?"),
        ("label(score > 0.5)", "unknown label field 'score'"),
        ("class = 'car'", "'class' is a field of labels and predictions: write label(class ...)"),
        ("label(width > 3)", "row fields go outside label(...)"),
        ("metadata = 1", "name a metadata path"),
        ("label(attributes = 1)", "name an attribute"),
    ],
)
def test_unknown_fields_name_the_closest_known_ones(text, message):
    assert message in error_of(text).message


def test_suggestions_are_also_given_as_data():
    assert error_of("metadata.wether = 'rain'").extra["suggestions"] == ["metadata.weather"]
    assert "suggestions" not in error_of("label(score > 0.5)").extra


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        (
            "metadata.capture.gps.lat > 'north'",
            28,
            "type mismatch: metadata.capture.gps.lat is a number field but 'north' is a string",
        ),
        ("metadata.weather = 3", 20, "type mismatch: metadata.weather is a string field but 3 is a number"),
        ("metadata.night = 'yes'", 18, "type mismatch: metadata.night is a boolean field but 'yes' is a string"),
        ("width IN (1, 'two')", 14, "type mismatch: width is a number field but 'two' is a string"),
        ("created_at > 'yesterday'", 14, "created_at is a datetime field: 'yesterday' is not an ISO 8601 date"),
        ("metadata.night < true", 1, "metadata.night is a boolean field: it takes = and !=, not <"),
        ("tags > 'a'", 1, "tags is a tags field: it takes = and !=, not >"),
        ("width LIKE 'a%'", 1, "width is a number field: LIKE needs a string field"),
        ("metadata.night BETWEEN true AND false", 1, "BETWEEN needs a string, number or datetime field"),
        ("label(attributes.size BETWEEN 1 AND 'z')", 37, "BETWEEN needs two values of one type"),
        ("uri UNDER 'a'", 1, "UNDER works on class only"),
        ("MATCH(metadata.capture.gps.lat, 'x')", 1, "MATCH needs a string metadata field"),
        ("label(MATCH(attributes.color, 'x'))", 7, "MATCH needs a string metadata field, not attributes.color"),
        ("uri LIKE 'a\\'", 10, "cannot end with a lone backslash"),
        ("label(label(class = 'x'))", 7, "label(...) cannot be nested inside label(...)"),
        ("COUNT(label) >= 1.5", 17, "COUNT compares to a whole number"),
        ("width > 1e999", 9, "out of range"),
    ],
)
def test_type_and_operator_errors_are_named(text, column, message):
    error = error_of(text)
    assert message in error.message
    assert error.column == column


SLICES = {
    "hard cases": SliceDefinition(id=7, name="hard cases", live=False),
    "rainy": SliceDefinition(id=8, name="rainy", live=True, query="metadata.weather = 'rain'"),
    "rainy in 3": SliceDefinition(id=9, name="rainy in 3", live=True, query="IN SLICE 'rainy'", dataset_id=3),
    "everything": SliceDefinition(id=10, name="everything", live=True, query=""),
    "loop a": SliceDefinition(id=11, name="loop a", live=True, query="width > 1 OR IN SLICE 'loop b'"),
    "loop b": SliceDefinition(id=12, name="loop b", live=True, query="IN SLICE 'loop a'"),
    "broken": SliceDefinition(id=13, name="broken", live=True, query="metadata.wether = 'rain'"),
    **{
        f"level {i}": SliceDefinition(id=100 + i, name=f"level {i}", live=True, query=f"IN SLICE 'level {i + 1}'")
        for i in range(12)
    },
}


def check_slices(text: str) -> ast.Expr:
    return validate(parse(text), catalog=CATALOG, text=text, slices=SLICES).root


def test_in_slice_of_an_ids_or_frozen_slice_becomes_a_membership_test():
    assert isinstance(parse("IN SLICE 'hard cases'"), ast.InSlice)
    root = check_slices("width > 1 AND NOT IN SLICE 'hard cases'")
    assert root.items[1] == ast.Not(ast.SliceMembership(7, ast.Pos(1, 19)), ast.Pos(1, 15))


def test_in_slice_of_a_live_slice_inlines_its_query_limited_to_its_dataset():
    assert check_slices("IN SLICE 'rainy'") == check("metadata.weather = 'rain'")
    nested = check_slices("IN SLICE 'rainy in 3'")
    assert isinstance(nested, ast.And) and nested.items[0] == check("metadata.weather = 'rain'")
    assert (nested.items[1].field.path, nested.items[1].value.value) == (("dataset",), 3)
    assert isinstance(check_slices("IN SLICE 'everything'"), ast.Exists)


def test_unknown_slices_get_the_closest_names():
    with pytest.raises(QueryError) as raised:
        check_slices("width > 1 AND IN SLICE 'hard case'")
    assert "unknown slice 'hard case'" in raised.value.message
    assert raised.value.extra["suggestions"] == ["hard cases"] and raised.value.column == 24
    with pytest.raises(QueryError, match="unknown slice 'hard cases'"):
        check("IN SLICE 'hard cases'")  # no slices given: none is known


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("IN SLICE 'loop a'", "slice 'loop a' refers to itself: 'loop a' -> 'loop b' -> 'loop a'"),
        ("IN SLICE 'level 0'", "live slices nest more than 8 deep"),
        (
            "IN SLICE 'broken'",
            "the query of live slice 'broken' fails at its line 1, column 1: unknown field 'metadata.wether'",
        ),
        ("label(IN SLICE 'hard cases')", "IN SLICE selects datarows: it cannot be used inside label(...)"),
    ],
)
def test_slice_cycles_depth_and_broken_live_queries_are_errors(text, message):
    with pytest.raises(QueryError) as raised:
        check_slices(text)
    assert message in raised.value.message


def test_keywords_are_case_insensitive_and_usable_as_metadata_keys():
    assert (
        to_text(check("metadata.and > 1 and not metadata.weather is null"))
        == "metadata.and > 1 AND NOT (NOT (metadata.weather IS NOT NULL))"
    )


def test_query_length_limit():
    error = error_of("width = 1 OR " * (MAX_QUERY_CHARS // 13) + "width = 1")
    assert f"longer than {MAX_QUERY_CHARS} characters" in error.message


def test_nesting_depth_limit():
    check("NOT " * (MAX_DEPTH - 1) + "width = 1")
    error = error_of("NOT " * (MAX_DEPTH + 1) + "width = 1")
    assert f"nested deeper than {MAX_DEPTH} levels" in error.message


def test_deep_parentheses_alone_do_not_nest():
    assert to_text(check("(" * 500 + "width = 1" + ")" * 500)) == "width = 1"


def test_in_list_limit():
    check(f"width IN ({', '.join(['1'] * MAX_IN_VALUES)})")
    error = error_of(f"width IN ({', '.join(['1'] * (MAX_IN_VALUES + 1))})")
    assert f"at most {MAX_IN_VALUES} values" in error.message


def test_object_condition_limit():
    check(" OR ".join(["label(class = 'car')"] * MAX_OBJECT_CONDITIONS))
    error = error_of(" OR ".join(["label(class = 'car')"] * (MAX_OBJECT_CONDITIONS + 1)))
    assert f"at most {MAX_OBJECT_CONDITIONS} label/prediction/evaluation conditions" in error.message


def test_strings_and_names_with_nul_are_refused():
    assert "NUL" in error_of("uri = 'a\x00b'").message
    assert "NUL" in error_of('label(attributes."a\x00b" = 1)').message


def test_lone_surrogates_are_refused_at_their_position():
    error = error_of("width = 1 AND\nuri = '\ud800'")
    assert (error.line, error.column) == (2, 8)


# --- evaluation conditions: run 7 succeeded (det@2's latest, after run 5), run 8 is still running
RUNS = EvaluationRuns({5: "succeeded", 7: "succeeded", 8: "running"}, {"det@2": 7})


def check_runs(text: str, **options) -> ast.Expr:
    return validate(parse(text), catalog=CATALOG, text=text, evaluation_runs=RUNS, **options).root


def test_an_evaluation_condition_names_its_run_first_and_a_model_becomes_its_latest_run():
    by_run = check_runs("evaluation(outcome = 'fn' AND run = 7 AND class = 'car')")
    by_model = check_runs("evaluation(model = 'det@2' AND (outcome = 'fn' AND class = 'car'))")
    assert to_text(by_run) == to_text(by_model) == "evaluation(run = 7 AND outcome = 'fn' AND class = 'car')"
    count = check_runs("COUNT(evaluation WHERE model = 'det@2') >= 2")
    assert to_text(count) == "COUNT(evaluation WHERE run = 7) >= 2"
    assert isinstance(parse("EVALUATION(run = 7)"), ast.ObjectMatch)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("evaluation(run = 9 AND outcome = 'fn')", "unknown evaluation run 9", 18),
        ("evaluation(run = 8)", "evaluation run 8 has not succeeded (its job is running)", 18),
        ("evaluation(model = 'det@1')", "model version 'det@1' has no succeeded evaluation run in this project", 20),
        ("evaluation(model = 'det')", "model takes 'name@version'", 20),
        ("evaluation(run = 7.5)", "run takes an evaluation run id, a whole number, not 7.5", 18),
        ("evaluation(run = '7')", "run takes an evaluation run id, a whole number, not '7'", 18),
        ("evaluation(outcome = 'fn')", "name their run: add run = <id> or model = 'name@version'", 1),
        ("COUNT(evaluation) > 1", "name their run", 1),
        ("evaluation(run = 7 OR class = 'car')", "name their run", 1),
        ("evaluation(run IN (7))", "name their run", 1),
        ("evaluation(run = 7 AND NOT run = 5)", "run names the run once", 28),
        ("evaluation(run = 7 AND model = 'det@2')", "model names the run once", 24),
        ("evaluation(run = 7 AND outcome = 'miss')", "outcome is one of 'tp', 'fp', 'fn', not 'miss'", 34),
        ("evaluation(run = 7 AND side IN ('label', 'gt'))", "side is one of 'label', 'prediction', not 'gt'", 42),
        ("evaluation(run = 7 AND attributes.x = 1)", "unknown evaluation field 'attributes.x'", 24),
        ("evaluation(run = 7 AND area > 1)", "unknown evaluation field 'area'", 24),
        ("evaluation(run = 7 AND iou > 'x')", "type mismatch: iou is a number field", 30),
        ("outcome = 'fn'", "'outcome' is a field of evaluation matches", 1),
        ("label(evaluation(run = 7))", "evaluation(...) cannot be nested inside label(...)", 7),
        ("evaluation(run = 7 AND label(class = 'car'))", "label(...) cannot be nested inside evaluation(...)", 24),
    ],
)
def test_evaluation_conditions_that_cannot_run_name_what_is_wrong(text, message, column):
    with pytest.raises(QueryError) as raised:
        check_runs(text)
    assert message in raised.value.message
    assert raised.value.column == column


def test_without_the_projects_runs_every_run_is_unknown():
    with pytest.raises(QueryError, match="unknown evaluation run 7"):
        check("evaluation(run = 7)")


def test_a_model_the_project_does_not_have_gets_the_closest_names():
    with pytest.raises(QueryError) as raised:
        check_runs("evaluation(model = 'det@3')", model_versions={"det@1", "det@2"})
    assert "unknown model version 'det@3'" in raised.value.message
    assert set(raised.value.extra["suggestions"]) == {"det@1", "det@2"}
