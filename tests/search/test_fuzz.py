"""Any text at all: parse, validate and compile raise QueryError or succeed, never anything else."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.ql import QueryError, parse, validate
from search.ql.render import to_text
from tests.search.postgres_queries import compile_query
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
    try:
        compile_query(validate(parse(text), catalog=CATALOG, text=text), project_id=1, dataset_id=2)
    except QueryError as error:
        assert error.line >= 1 and error.column >= 1
        assert error.render()


@FUZZ
@given(st.text(max_size=120))
def test_arbitrary_text(text):
    _run(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup(text):
    _run(text)


@FUZZ
@given(queries([1, 2]), st.data())
def test_mutated_valid_queries(tree, data):
    text = to_text(tree)
    position = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.sampled_from(TOKENS) | st.text(max_size=2))
    _run(text[:position] + insert + text[position + cut :])
