"""Any text at all: parse, validate and compile raise QueryError or succeed, never anything else."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.ql import QueryError, parse, validate
from search.ql.validation import EvaluationRuns
from tests.search.postgres_queries import compile_query
from tests.search.render import to_text
from tests.search.strategies import queries

CATALOG = {
    "weather": "string",
    "capture.gps.lat": "number",
    "capture.time": "datetime",
    "night": "boolean",
    "caption": "string",
    "objects_seen": "string",
    "people.name": "string",
    "people.age": "number",
}
# Run 1 succeeded and is yolo@1's latest; run 2 is still running.
EVALUATION_RUNS = EvaluationRuns({1: "succeeded", 2: "running"}, {"yolo@1": 1})
TOKENS = [
    "(",
    ")",
    ",",
    ".",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "LIKE",
    "IS",
    "NULL",
    "UNDER",
    "EXISTS",
    "MATCH",
    "SLICE",
    "COUNT",
    "WHERE",
    "TRUE",
    "false",
    "label",
    "prediction",
    "evaluation",
    "run",
    "outcome",
    "'fn'",
    "predicted_class",
    "iou",
    "width",
    "uri",
    "tags",
    "dataset",
    "created_at",
    "metadata",
    "weather",
    "capture",
    "gps",
    "lat",
    "time",
    "night",
    "class",
    "area",
    "score",
    "model",
    "attributes",
    "occluded",
    "'car'",
    "'2024-05-01'",
    "'a%'",
    "'\\'",
    "''",
    "'",
    '"',
    '"k"',
    "1",
    "-2.5",
    "1e999",
    "0.5",
    "3",
    "\n",
    "$",
    "@",
    "\x00",
    "é",
    "😀",
]
FUZZ = settings(
    max_examples=1500, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _run(text: str) -> None:
    """The text compiles, or fails with a QueryError that points at a line and column."""
    try:
        compile_query(
            validate(parse(text), catalog=CATALOG, text=text, evaluation_runs=EVALUATION_RUNS),
            project_id=1,
            dataset_id=2,
        )
    except QueryError as error:
        raised = error
    else:
        return  # the text was a valid query
    assert raised.line >= 1 and raised.column >= 1
    assert raised.render()


@FUZZ
@given(st.text(max_size=120))
def test_arbitrary_text(text):
    _run(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup(text):
    _run(text)


@FUZZ
@given(queries([1, 2], runs=(1, 2, "yolo@1", "detr@1")), st.data())
def test_mutated_valid_queries(tree, data):
    text = to_text(tree)
    position = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.sampled_from(TOKENS) | st.text(max_size=2))
    _run(text[:position] + insert + text[position + cut :])
