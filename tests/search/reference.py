"""The reference evaluator, the tests' oracle: the documented semantics (docs/query-language.md) in plain Python
over datarow dicts.

A datarow dict: {"id", "external_id", "uri", "width", "height", "created_at", "updated_at", "dataset_id",
"metadata", "tags", "labels": [object], "predictions": [object]}, and "slice_ids": the ids and frozen slices
holding it (absent: none); an object: {"class", "kind", "x", "y", "w",
"h", "area", "attributes"}, and for predictions also "score" and "model" ("name@version"); "evaluation_matches"
(absent: none): {"run", "side", "outcome", "class", "predicted_class", "iou", "score"}, the last three may be None.
Every predicate is true or false; a missing or null value satisfies no comparison.
"""

import operator
import re
from collections.abc import Iterable

from search.ql import ast
from search.ql.text import text_words
from search.ql.validation import ROW, FieldSpec, ValidQuery, field_type, parse_datetime, resolve_field, typed_value
from search.ql.visitor import Visitor

# The datarow dict's list of each object kind.
OBJECT_LISTS = {"label": "labels", "prediction": "predictions", "evaluation": "evaluation_matches"}
# Evaluation match columns under the names the dicts use.
_MATCH_KEYS = {"run_id": "run", "predicted_class_id": "predicted_class"}
OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def like_regex(pattern: str, *, any_run: str = "%", one: str = "_") -> re.Pattern:
    """SQL LIKE: % any run, _ one character, backslash escapes the next character; the whole value must match.
    Other wildcards of the same kind (Elasticsearch's * and ?) name their own characters."""
    parts, escaped = [], False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == any_run:
            parts.append(".*")
        elif char == one:
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def json_values(tree, path: tuple[str, ...]) -> list:
    """The non-null values at a path, stepping into lists on the way and at the end (jsonpath lax mode)."""
    current = [tree]
    for key in path:
        current = [
            element[key]
            for item in current
            for element in (item if isinstance(item, list) else [item])
            if isinstance(element, dict) and key in element
        ]
    values = [element for item in current for element in (item if isinstance(item, list) else [item])]
    return [value for value in values if value is not None]


def _is_type(value, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


class _Evaluator(Visitor[[str, dict], bool]):
    """Whether a node holds for `item` (a datarow, or an object of kind `scope`)."""

    def __init__(self, query: ValidQuery):
        self.query = query

    def visit_And(self, node: ast.And, scope: str, item: dict) -> bool:
        return all(self.visit(child, scope, item) for child in node.items)

    def visit_Or(self, node: ast.Or, scope: str, item: dict) -> bool:
        return any(self.visit(child, scope, item) for child in node.items)

    def visit_Not(self, node: ast.Not, scope: str, item: dict) -> bool:
        return not self.visit(node.item, scope, item)

    def visit_ObjectMatch(self, node: ast.ObjectMatch, scope: str, item: dict) -> bool:
        return any(self.visit(node.condition, node.kind, obj) for obj in item.get(OBJECT_LISTS[node.kind], ()))

    def visit_ObjectCount(self, node: ast.ObjectCount, scope: str, item: dict) -> bool:
        count = sum(
            1
            for obj in item.get(OBJECT_LISTS[node.kind], ())
            if node.condition is None or self.visit(node.condition, node.kind, obj)
        )
        return OPERATORS[node.op](count, node.count.value)

    def visit_SliceMembership(self, node: ast.SliceMembership, scope: str, item: dict) -> bool:
        return node.slice_id in item.get("slice_ids", ())

    def field_values(self, node: ast.Predicate, scope: str, item: dict) -> tuple[FieldSpec, list]:
        spec = resolve_field(node.field, scope, self.query.catalog)
        return spec, self.values(spec, item)

    def visit_Exists(self, node: ast.Exists, scope: str, item: dict) -> bool:
        return bool(self.field_values(node, scope, item)[1])

    def visit_Like(self, node: ast.Like, scope: str, item: dict) -> bool:
        values = self.field_values(node, scope, item)[1]
        regex = like_regex(node.pattern.value)
        return any(isinstance(value, str) and regex.fullmatch(value) for value in values)

    def visit_Match(self, node: ast.Match, scope: str, item: dict) -> bool:
        values = self.field_values(node, scope, item)[1]
        wanted = text_words(node.text.value)
        return bool(wanted) and any(isinstance(value, str) and wanted <= text_words(value) for value in values)

    def visit_Under(self, node: ast.Under, scope: str, item: dict) -> bool:
        values = self.field_values(node, scope, item)[1]
        prefix = node.value.value
        return any(value == prefix or value.startswith(prefix + "/") for value in values)

    def visit_Compare(self, node: ast.Compare, scope: str, item: dict) -> bool:
        if node.op == "!=":
            return not self.visit(ast.Compare(node.field, "=", node.value, node.pos), scope, item)
        spec, values = self.field_values(node, scope, item)
        return self.any_value(spec, values, node.value, lambda v, x: OPERATORS[node.op](v, x))

    def visit_InList(self, node: ast.InList, scope: str, item: dict) -> bool:
        spec, values = self.field_values(node, scope, item)
        return any(self.any_value(spec, values, value, operator.eq) for value in node.values)

    def visit_Between(self, node: ast.Between, scope: str, item: dict) -> bool:
        spec, values = self.field_values(node, scope, item)
        low, high = typed_value(spec, node.low), typed_value(spec, node.high)
        kind = field_type(spec, node.low)
        return any(low <= value <= high for value in self.comparable(spec, kind, values))

    def any_value(self, spec: FieldSpec, values: list, literal: ast.Value, test) -> bool:
        kind = field_type(spec, literal)
        expected = typed_value(spec, literal)
        return any(test(value, expected) for value in self.comparable(spec, kind, values))

    @staticmethod
    def comparable(spec: FieldSpec, kind: str, values: list) -> Iterable:
        """The values of the condition's type: stored datetimes are ISO strings in metadata and datetimes in columns."""
        if kind == "datetime":
            for value in values:
                moment = parse_datetime(value) if isinstance(value, str) else value
                if moment is not None:
                    yield moment
            return
        if spec.kind in ("tags", "class", "model"):
            kind = "string"
        yield from (value for value in values if _is_type(value, kind))

    @staticmethod
    def values(spec: FieldSpec, item: dict) -> list:
        if spec.kind == "metadata":
            return json_values(item["metadata"], spec.path)
        if spec.kind == "attributes":
            return json_values(item["attributes"], spec.path)
        if spec.kind == "tags":
            return list(item["tags"])
        key = _MATCH_KEYS.get(spec.column or "") or {"class": "class", "model": "model"}.get(spec.kind, spec.column)
        return [] if item[key] is None else [item[key]]


def matches(query: ValidQuery, datarow: dict) -> bool:
    return _Evaluator(query).visit(query.root, ROW, datarow)


def datarow_ids(query: ValidQuery, datarows: Iterable[dict]) -> list[int]:
    evaluator = _Evaluator(query)
    return sorted(row["id"] for row in datarows if evaluator.visit(query.root, ROW, row))
