"""Tree -> canonical query text; parse(to_text(tree)) gives the same tree back (positions aside)."""

import re

from search.ql import ast

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


def to_text(node: ast.Expr) -> str:
    if isinstance(node, ast.And):
        return " AND ".join(_operand(item) for item in node.items)
    if isinstance(node, ast.Or):
        return " OR ".join(_operand(item) for item in node.items)
    if isinstance(node, ast.Not):
        return f"NOT ({to_text(node.item)})"
    if isinstance(node, ast.ObjectMatch):
        return f"{node.kind}({to_text(node.condition)})"
    if isinstance(node, ast.ObjectCount):
        where = f" WHERE {to_text(node.condition)}" if node.condition is not None else ""
        return f"COUNT({node.kind}{where}) {node.op} {_value(node.count)}"
    if isinstance(node, ast.InSlice):
        return f"IN SLICE {_value(node.name)}"
    if isinstance(node, ast.Match):
        return f"MATCH({_field(node.field)}, {_value(node.text)})"
    assert not isinstance(node, ast.SliceMembership), "validation's slice ids have no query text"
    field = _field(node.field)
    if isinstance(node, ast.Compare):
        return f"{field} {node.op} {_value(node.value)}"
    if isinstance(node, ast.InList):
        return f"{field} IN ({', '.join(_value(value) for value in node.values)})"
    if isinstance(node, ast.Between):
        return f"{field} BETWEEN {_value(node.low)} AND {_value(node.high)}"
    if isinstance(node, ast.Like):
        return f"{field} LIKE {_value(node.pattern)}"
    if isinstance(node, ast.Under):
        return f"{field} UNDER {_value(node.value)}"
    return f"{field} IS NOT NULL"
