"""Query text -> typed tree (search.ql.ast), with the size limits of docs/query-language.md."""

import math
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.tree import Meta

from search.ql import ast
from search.ql.errors import QueryError
from search.ql.limits import DEFAULT_LIMITS, SETTINGS, QueryLimits, like_wildcards

MAX_OBJECT_CONDITIONS = 20

# Tree nodes that add a level of nesting; parentheses alone do not.
_NESTING_RULES = {"or_expr", "and_expr", "negation", "object_match", "object_count"}
_TERMINAL_WORDS = {
    "COMPARISON": "a comparison (=, !=, <, <=, >, >=)",
    "NAME": "a field name",
    "QUOTED_NAME": 'a "quoted" name',
    "STRING": "a 'string'",
    "NUMBER": "a number",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
    "$END": "the end of the query",
}


@cache
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=False)


def _words(terminals: Iterable[str]) -> str:
    return ", ".join(sorted(_TERMINAL_WORDS.get(name, name) for name in terminals))


def _pos(item: Tree | Token) -> ast.Pos:
    if isinstance(item, Token):
        assert item.line is not None and item.column is not None, "the lexer places every token"
        return ast.Pos(item.line, item.column)
    return ast.Pos(item.meta.line, item.meta.column)


def _end_pos(text: str) -> ast.Pos:
    lines = text.split("\n")
    return ast.Pos(len(lines), len(lines[-1]) + 1)


class _Limit(Exception):
    def __init__(self, message: str, pos: ast.Pos, extra: dict | None = None):
        self.message = message
        self.pos = pos
        self.extra = extra or {}


def _over(limits: QueryLimits, name: str, message: str, pos: ast.Pos) -> _Limit:
    """A size limit reached: the message and `extra` name the limit's setting and its value."""
    value = getattr(limits, name)
    return _Limit(f"{message.format(value)} ({SETTINGS[name]})", pos, {"limit": SETTINGS[name], "max": value})


def _limit_error(text: str, limit: _Limit) -> QueryError:
    error = QueryError(limit.message, query=text, line=limit.pos.line, column=limit.pos.column)
    error.extra.update(limit.extra)
    return error


def _string(token: Token) -> ast.Value:
    return ast.Value(token[1:-1].replace("''", "'"), _pos(token))


def _number(token: Token) -> ast.Value:
    text = str(token)
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if not math.isfinite(value) or abs(value) > 1e300:
        raise _Limit(f"number {text} is out of range", _pos(token))
    return ast.Value(value, _pos(token))


def _value(token: Token) -> ast.Value:
    if token.type == "STRING":
        return _string(token)
    if token.type == "NUMBER":
        return _number(token)
    return ast.Value(token.type == "TRUE", _pos(token))


def _keyword(children: list[Any], name: str) -> bool:
    return any(isinstance(child, Token) and child.type == name for child in children)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, limits: QueryLimits) -> None:
        super().__init__()
        self.limits = limits

    def start(self, meta: Meta, children: list[Any]) -> Any:
        return children[0]

    def or_expr(self, meta: Meta, children: list[Any]) -> Any:
        return ast.Or(tuple(c for c in children if not isinstance(c, Token)), ast.Pos(meta.line, meta.column))

    def and_expr(self, meta: Meta, children: list[Any]) -> Any:
        return ast.And(tuple(c for c in children if not isinstance(c, Token)), ast.Pos(meta.line, meta.column))

    def negation(self, meta: Meta, children: list[Any]) -> Any:
        return ast.Not(children[1], _pos(children[0]))

    def field(self, meta: Meta, children: list[Any]) -> Any:
        names = tuple(c[1:-1].replace('""', '"') if c.type == "QUOTED_NAME" else str(c) for c in children)
        return ast.Field(names, ast.Pos(meta.line, meta.column))

    def object_kind(self, meta: Meta, children: list[Any]) -> Any:
        return children[0]

    def compare(self, meta: Meta, children: list[Any]) -> Any:
        field, op, value = children
        return ast.Compare(field, "!=" if op == "<>" else str(op), _value(value), field.pos)

    def in_list(self, meta: Meta, children: list[Any]) -> Any:
        field = children[0]
        values = tuple(_value(c) for c in children[1:] if c.type not in ("NOT", "IN"))
        if len(values) > self.limits.max_in_values:
            raise _over(
                self.limits,
                "max_in_values",
                "an IN list may hold at most {} values",
                values[self.limits.max_in_values].pos,
            )
        return self._negated(children, ast.InList(field, values, field.pos))

    def between(self, meta: Meta, children: list[Any]) -> Any:
        field = children[0]
        low, high = (_value(c) for c in children[1:] if c.type not in ("NOT", "BETWEEN", "AND"))
        return self._negated(children, ast.Between(field, low, high, field.pos))

    def like(self, meta: Meta, children: list[Any]) -> Any:
        field = children[0]
        pattern = self._pattern(children[-1])
        if like_wildcards(str(pattern.value)) > self.limits.max_pattern_wildcards:
            raise _over(
                self.limits,
                "max_pattern_wildcards",
                "a LIKE pattern may hold at most {} wildcards (% and _)",
                pattern.pos,
            )
        return self._negated(children, ast.Like(field, pattern, field.pos))

    def is_null(self, meta: Meta, children: list[Any]) -> Any:
        field = children[0]
        exists = ast.Exists(field, field.pos)
        return exists if _keyword(children, "NOT") else ast.Not(exists, field.pos)

    def under(self, meta: Meta, children: list[Any]) -> Any:
        return ast.Under(children[0], _string(children[2]), children[0].pos)

    def exists(self, meta: Meta, children: list[Any]) -> Any:
        return ast.Exists(children[1], _pos(children[0]))

    def match(self, meta: Meta, children: list[Any]) -> Any:
        return ast.Match(children[1], self._pattern(children[2]), _pos(children[0]))

    def in_slice(self, meta: Meta, children: list[Any]) -> Any:
        return ast.InSlice(_string(children[2]), _pos(children[0]))

    def object_match(self, meta: Meta, children: list[Any]) -> Any:
        kind, condition = children
        return ast.ObjectMatch(str(kind).lower(), condition, _pos(kind))

    def object_count(self, meta: Meta, children: list[Any]) -> Any:
        kind = children[1]
        condition = children[3] if _keyword(children, "WHERE") else None
        count = _number(children[-1])
        if not isinstance(count.value, int) or count.value < 0:
            raise _Limit("COUNT compares to a whole number >= 0", count.pos)
        return ast.ObjectCount(
            str(kind).lower(), condition, str(children[-2]).replace("<>", "!="), count, _pos(children[0])
        )

    def _pattern(self, token: Token) -> ast.Value:
        """A LIKE pattern or MATCH text: its cost grows with its length."""
        pattern = _string(token)
        assert isinstance(pattern.value, str)
        if len(pattern.value) > self.limits.max_pattern_length:
            raise _over(
                self.limits,
                "max_pattern_length",
                "a LIKE pattern or MATCH text may be at most {} characters",
                pattern.pos,
            )
        return pattern

    @staticmethod
    def _negated(children: list[Any], predicate: ast.Predicate) -> ast.Expr:
        return ast.Not(predicate, predicate.pos) if _keyword(children, "NOT") else predicate


def _check_shape(tree: Tree, limits: QueryLimits) -> None:
    """Depth and object-condition count, walked without recursion so a hostile query cannot exhaust the stack."""
    objects = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in ("object_match", "object_count"):
            objects += 1
            if objects > MAX_OBJECT_CONDITIONS:
                raise _Limit(
                    f"a query may hold at most {MAX_OBJECT_CONDITIONS} label/prediction/evaluation conditions",
                    _pos(node),
                )
        depth += node.data in _NESTING_RULES
        if depth > limits.max_depth:
            raise _over(limits, "max_depth", "the query is nested deeper than {} levels", _pos(node))
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))


def _check_encodable(text: str) -> None:
    """A lone surrogate (possible in JSON input) cannot be sent to PostgreSQL as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        before = text[: error.start]
        line = before.count("\n") + 1
        column = error.start - (before.rfind("\n") + 1) + 1
        raise QueryError(
            "the query holds a character that is not valid Unicode", query=text, line=line, column=column
        ) from None


def parse(text: str, limits: QueryLimits = DEFAULT_LIMITS) -> ast.Expr:
    """Parse query text into the typed tree within `limits`; raises QueryError with the line and column of the first
    problem."""
    if len(text) > limits.max_query_chars:
        raise _limit_error(
            text[:200], _over(limits, "max_query_chars", "the query is longer than {} characters", ast.Pos(1, 1))
        )
    if not text.strip():
        raise QueryError("the query is empty", query=text, line=1, column=1)
    _check_encodable(text)
    try:
        tree = _lark().parse(text)
        _check_shape(tree, limits)
        expr: ast.Expr = _ToAst(limits).transform(tree)
        return expr
    except _Limit as limit:
        raise _limit_error(text, limit) from None
    except VisitError as error:
        if isinstance(error.orig_exc, _Limit):
            raise _limit_error(text, error.orig_exc) from None
        raise
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None


def _syntax_error(text: str, error: UnexpectedInput) -> QueryError:
    if isinstance(error, UnexpectedCharacters):
        assert error.pos_in_stream is not None, "the lexer places every character"
        message = f"unexpected character {text[error.pos_in_stream]!r}"
        if error.allowed:
            message += f"; expected {_words(error.allowed)}"
        return QueryError(message, query=text, line=error.line, column=error.column)
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        return QueryError(
            f"unexpected {str(error.token)!r}; expected {_words(error.expected)}",
            query=text,
            line=error.line,
            column=error.column,
        )
    expected = error.expected if isinstance(error, (UnexpectedToken, UnexpectedEOF)) else ()
    end = _end_pos(text)
    return QueryError(
        f"the query ends too early; expected {_words(expected)}", query=text, line=end.line, column=end.column
    )
