"""Tree -> canonical query text; parse(to_text(tree)) gives the same tree back (positions aside). The tests write
the random trees they generate back as queries with it."""

import re

from search.ql import ast
from search.ql.visitor import Visitor

_BARE_NAME = re.compile(r"[a-z_][a-z0-9_\-]*", re.IGNORECASE)


def _name(segment: str) -> str:
    return segment if _BARE_NAME.fullmatch(segment) else '"' + segment.replace('"', '""') + '"'


def _field(field: ast.Field) -> str:
    return ".".join(_name(segment) for segment in field.path)


def _value(value: ast.Value) -> str:
    if isinstance(value.value, bool):
        return "true" if value.value else "false"
    if isinstance(value.value, str):
        return "'" + value.value.replace("'", "''") + "'"
    return repr(value.value)


def _operand(node: ast.Expr) -> str:
    return f"({to_text(node)})" if isinstance(node, (ast.And, ast.Or)) else to_text(node)


class _Renderer(Visitor[[], str]):
    def visit_And(self, node: ast.And) -> str:
        return " AND ".join(_operand(item) for item in node.items)

    def visit_Or(self, node: ast.Or) -> str:
        return " OR ".join(_operand(item) for item in node.items)

    def visit_Not(self, node: ast.Not) -> str:
        return f"NOT ({to_text(node.item)})"

    def visit_ObjectMatch(self, node: ast.ObjectMatch) -> str:
        return f"{node.kind}({to_text(node.condition)})"

    def visit_ObjectCount(self, node: ast.ObjectCount) -> str:
        where = f" WHERE {to_text(node.condition)}" if node.condition is not None else ""
        return f"COUNT({node.kind}{where}) {node.op} {_value(node.count)}"

    def visit_InSlice(self, node: ast.InSlice) -> str:
        return f"IN SLICE {_value(node.name)}"

    def visit_Match(self, node: ast.Match) -> str:
        return f"MATCH({_field(node.field)}, {_value(node.text)})"

    # No visit_SliceMembership: validation's slice ids have no query text.

    def visit_Compare(self, node: ast.Compare) -> str:
        return f"{_field(node.field)} {node.op} {_value(node.value)}"

    def visit_InList(self, node: ast.InList) -> str:
        return f"{_field(node.field)} IN ({', '.join(_value(value) for value in node.values)})"

    def visit_Between(self, node: ast.Between) -> str:
        return f"{_field(node.field)} BETWEEN {_value(node.low)} AND {_value(node.high)}"

    def visit_Like(self, node: ast.Like) -> str:
        return f"{_field(node.field)} LIKE {_value(node.pattern)}"

    def visit_Under(self, node: ast.Under) -> str:
        return f"{_field(node.field)} UNDER {_value(node.value)}"

    def visit_Exists(self, node: ast.Exists) -> str:
        return f"{_field(node.field)} IS NOT NULL"


_RENDERER = _Renderer()


def to_text(node: ast.Expr) -> str:
    return _RENDERER.visit(node)
