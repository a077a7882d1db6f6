"""Check a parsed query against the project's field catalog: fields exist, operators fit their types, values
have the field's type. Engines resolve fields with `resolve_field` and values with `typed_value` afterwards."""

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime

from search.ql import ast
from search.ql.errors import QueryError

ORDERED_TYPES = ("string", "number", "datetime")
TEXT_TYPES = ("string", "tags", "class", "model")
ROW = "row"


@dataclass(frozen=True)
class FieldSpec:
    """What a field name resolves to. kind: column | tags | metadata | class | model | attributes.
    type: string | number | boolean | datetime | tags | class | model, or None for attributes (typed by the value)."""

    kind: str
    type: str | None
    column: str | None = None
    path: tuple[str, ...] = ()
    nullable: bool = False


# Fixed whitelists: the only identifiers that reach SQL.
ROW_FIELDS = {
    "external_id": FieldSpec("column", "string", "external_id"),
    "uri": FieldSpec("column", "string", "uri"),
    "width": FieldSpec("column", "number", "width", nullable=True),
    "height": FieldSpec("column", "number", "height", nullable=True),
    "created_at": FieldSpec("column", "datetime", "created_at"),
    "updated_at": FieldSpec("column", "datetime", "updated_at"),
    "dataset": FieldSpec("column", "number", "dataset_id"),
    "tags": FieldSpec("tags", "tags"),
}
_OBJECT_FIELDS = {
    "class": FieldSpec("class", "class"),
    "kind": FieldSpec("column", "string", "kind"),
    **{name: FieldSpec("column", "number", name, nullable=True) for name in ("x", "y", "w", "h", "area")},
}
OBJECT_FIELDS = {
    "label": _OBJECT_FIELDS,
    "prediction": {**_OBJECT_FIELDS, "score": FieldSpec("column", "number", "score"),
                   "model": FieldSpec("model", "model")},
}


@dataclass(frozen=True)
class ValidQuery:
    root: ast.Expr
    catalog: dict[str, str]
    text: str


def _error(query: str, message: str, pos: ast.Pos) -> QueryError:
    return QueryError(message, query=query, line=pos.line, column=pos.column)


def _unknown_field(query: str, what: str, name: str, candidates, pos: ast.Pos, hint: str = "",
                   prefix: str = "") -> QueryError:
    """`unknown field 'x'; did you mean ...?`, with the closest names also in `extra.suggestions`.
    Names under a common `prefix` are compared without it, which would otherwise make every one look close."""
    close = [prefix + c for c in difflib.get_close_matches(name.removeprefix(prefix), list(candidates), n=3, cutoff=0.6)]
    suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else hint
    error = _error(query, f"{what} {name!r}{suggestion}", pos)
    if close:
        error.extra["suggestions"] = close
    return error


def resolve_field(field: ast.Field, scope: str, catalog: dict[str, str], query: str = "") -> FieldSpec:
    """The FieldSpec of a field in a scope (ROW, "label" or "prediction"); QueryError if there is none."""
    head, rest, name = field.path[0], field.path[1:], ast.field_name(field)
    if scope == ROW:
        if head == "metadata":
            if not rest:
                raise _error(query, "name a metadata path, e.g. metadata.weather", field.pos)
            path = ".".join(rest)
            if path not in catalog:
                raise _unknown_field(query, "unknown field", name, catalog, field.pos, prefix="metadata.")
            return FieldSpec("metadata", catalog[path], path=rest)
        if not rest and head in ROW_FIELDS:
            return ROW_FIELDS[head]
        if not rest and head in OBJECT_FIELDS["prediction"]:
            raise _error(query, f"{name!r} is a field of labels and predictions: write label({name} ...) "
                                f"or prediction({name} ...)", field.pos)
        raise _unknown_field(query, "unknown field", name, [*ROW_FIELDS, *(f"metadata.{p}" for p in catalog)],
                             field.pos)
    fields = OBJECT_FIELDS[scope]
    if head == "attributes":
        if not rest:
            raise _error(query, "name an attribute, e.g. attributes.occluded", field.pos)
        return FieldSpec("attributes", None, path=rest)
    if not rest and head in fields:
        return fields[head]
    hint = "; row fields go outside label(...) and prediction(...)" if head in ROW_FIELDS or head == "metadata" else ""
    raise _unknown_field(query, f"unknown {scope} field", name, [*fields, "attributes"], field.pos, hint)


def literal_type(value: ast.Value) -> str:
    if isinstance(value.value, bool):
        return "boolean"
    return "string" if isinstance(value.value, str) else "number"


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date or date-time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def field_type(spec: FieldSpec, value: ast.Value) -> str:
    """The type a condition compares in: the field's, or for attributes (which have no catalog) the value's."""
    return spec.type or literal_type(value)


def typed_value(spec: FieldSpec, value: ast.Value):
    """The Python value a condition compares with (datetimes parsed)."""
    if spec.type == "datetime":
        return parse_datetime(value.value)
    return value.value


class _Validator:
    def __init__(self, query: str, catalog: dict[str, str]):
        self.query = query
        self.catalog = catalog

    def error(self, message: str, pos: ast.Pos) -> QueryError:
        return _error(self.query, message, pos)

    def check(self, node: ast.Expr, scope: str) -> None:
        if isinstance(node, (ast.And, ast.Or)):
            for item in node.items:
                self.check(item, scope)
        elif isinstance(node, ast.Not):
            self.check(node.item, scope)
        elif isinstance(node, ast.InSlice):
            raise self.error("IN SLICE is not available yet: slices cannot be queried until slices ship", node.pos)
        elif isinstance(node, (ast.ObjectMatch, ast.ObjectCount)):
            if scope != ROW:
                raise self.error(f"{node.kind}(...) cannot be nested inside {scope}(...)", node.pos)
            if node.condition is not None:
                self.check(node.condition, node.kind)
        else:
            self.check_predicate(node, scope)

    def check_predicate(self, node: ast.Predicate, scope: str) -> None:
        name = ast.field_name(node.field)
        if any("\x00" in segment for segment in node.field.path):
            raise self.error("names may not contain the NUL character", node.field.pos)
        spec = resolve_field(node.field, scope, self.catalog, self.query)
        if isinstance(node, ast.Compare):
            kind = field_type(spec, node.value)
            if node.op not in ("=", "!=") and kind not in ORDERED_TYPES:
                raise self.error(f"{name} is a {kind} field: it takes = and !=, not {node.op}", node.pos)
            self.check_value(name, spec, node.value)
        elif isinstance(node, ast.InList):
            for value in node.values:
                self.check_value(name, spec, value)
        elif isinstance(node, ast.Between):
            if literal_type(node.low) != literal_type(node.high):
                raise self.error(f"BETWEEN needs two values of one type, not a {literal_type(node.low)} and a "
                                 f"{literal_type(node.high)}", node.high.pos)
            for value in (node.low, node.high):
                if field_type(spec, value) not in ORDERED_TYPES:
                    raise self.error(f"{name} is a {field_type(spec, value)} field: BETWEEN needs a string, "
                                     f"number or datetime field", node.pos)
                self.check_value(name, spec, value)
        elif isinstance(node, ast.Like):
            if (spec.type or "string") not in TEXT_TYPES:
                raise self.error(f"{name} is a {spec.type} field: LIKE needs a string field", node.pos)
            self.check_value(name, spec, node.pattern)
            if (len(node.pattern.value) - len(node.pattern.value.rstrip("\\"))) % 2:
                raise self.error("a LIKE pattern cannot end with a lone backslash (\\ escapes the next character)",
                                 node.pattern.pos)
        elif isinstance(node, ast.Under):
            if spec.kind != "class":
                raise self.error(f"UNDER works on class only, not on {name}", node.pos)
            self.check_value(name, spec, node.value)
        elif isinstance(node, ast.Match):
            if spec.kind != "metadata" or spec.type != "string":
                raise self.error(f"MATCH needs a string metadata field, not {name}", node.pos)
            self.check_value(name, spec, node.text)

    def check_value(self, name: str, spec: FieldSpec, value: ast.Value) -> None:
        given = literal_type(value)
        if given == "string" and "\x00" in value.value:
            raise self.error("strings may not contain the NUL character", value.pos)
        expected = spec.type
        if expected is None or expected == given:
            return
        if expected in ("tags", "class", "model") and given == "string":
            return
        if expected == "datetime" and given == "string":
            if parse_datetime(value.value) is None:
                raise self.error(f"{name} is a datetime field: {value.value!r} is not an ISO 8601 date "
                                 f"(e.g. '2024-05-01' or '2024-05-01T10:00:00Z')", value.pos)
            return
        shown = "string" if expected in ("tags", "class", "model") else expected
        raise self.error(f"type mismatch: {name} is a {shown} field but {_shown(value)} is a {given}", value.pos)


def _shown(value: ast.Value) -> str:
    if isinstance(value.value, bool):
        return "true" if value.value else "false"
    return repr(value.value)


def validate(root: ast.Expr, *, catalog: dict[str, str], text: str) -> ValidQuery:
    """Check the tree against the catalog (metadata path -> type); raises QueryError at the offending spot."""
    _Validator(text, catalog).check(root, ROW)
    return ValidQuery(root, dict(catalog), text)
