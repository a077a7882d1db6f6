"""Check a parsed query against the project's field catalog: fields exist, operators fit their types, values
have the field's type. Engines resolve fields with `resolve_field` and values with `typed_value` afterwards."""

import difflib
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime

from search.ql import ast
from search.ql.errors import QueryError
from search.ql.limits import DEFAULT_LIMITS, QueryLimits
from search.ql.parser import parse

ORDERED_TYPES = ("string", "number", "datetime")
# A live slice's query is inlined where it is named, and may name live slices in turn: this many levels at most.
MAX_SLICE_DEPTH = 8
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
    "prediction": {
        **_OBJECT_FIELDS,
        "score": FieldSpec("column", "number", "score"),
        "model": FieldSpec("model", "model"),
    },
}


@dataclass(frozen=True)
class SliceDefinition:
    """What `IN SLICE 'name'` stands for, as the slices app describes it: a live slice by its query text (and the
    dataset it is limited to), an ids or frozen slice by its id."""

    id: int
    name: str
    live: bool
    query: str = ""
    dataset_id: int | None = None


@dataclass(frozen=True)
class ValidQuery:
    root: ast.Expr
    catalog: dict[str, str]
    text: str


def _error(query: str, message: str, pos: ast.Pos) -> QueryError:
    return QueryError(message, query=query, line=pos.line, column=pos.column)


def _unknown_field(
    query: str, what: str, name: str, candidates: Iterable[str], pos: ast.Pos, hint: str = "", prefix: str = ""
) -> QueryError:
    """`unknown field 'x'; did you mean ...?`, with the closest names also in `extra.suggestions`.
    Names under a common `prefix` are compared without it, which would otherwise make every one look close."""
    close = [
        prefix + c for c in difflib.get_close_matches(name.removeprefix(prefix), list(candidates), n=3, cutoff=0.6)
    ]
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
            raise _error(
                query,
                f"{name!r} is a field of labels and predictions: write label({name} ...) or prediction({name} ...)",
                field.pos,
            )
        raise _unknown_field(
            query, "unknown field", name, [*ROW_FIELDS, *(f"metadata.{p}" for p in catalog)], field.pos
        )
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


def typed_value(spec: FieldSpec, value: ast.Value) -> str | int | float | bool | datetime | None:
    """The Python value a condition compares with (datetimes parsed)."""
    if spec.type == "datetime":
        assert isinstance(value.value, str), "check_value lets only strings through to a datetime field"
        return parse_datetime(value.value)
    return value.value


class _Validator:
    def __init__(
        self,
        query: str,
        catalog: dict[str, str],
        slices: Mapping[str, SliceDefinition] | None,
        limits: QueryLimits,
        within: tuple[str, ...] = (),
        model_versions: Set[str] | None = None,
    ):
        self.query = query
        self.catalog = catalog
        self.slices = slices
        self.limits = limits
        self.model_versions = model_versions
        self.within = within  # the live slices being inlined, outermost first

    def error(self, message: str, pos: ast.Pos) -> QueryError:
        return _error(self.query, message, pos)

    def check(self, node: ast.Expr, scope: str) -> ast.Expr:
        """The node as engines compile it: the same tree, with every `IN SLICE` resolved."""
        if isinstance(node, ast.And):
            return ast.And(tuple(self.check(item, scope) for item in node.items), node.pos)
        if isinstance(node, ast.Or):
            return ast.Or(tuple(self.check(item, scope) for item in node.items), node.pos)
        if isinstance(node, ast.Not):
            return ast.Not(self.check(node.item, scope), node.pos)
        if isinstance(node, ast.InSlice):
            if scope != ROW:
                raise self.error(f"IN SLICE selects datarows: it cannot be used inside {scope}(...)", node.pos)
            return self.resolve_slice(node)
        if isinstance(node, (ast.ObjectMatch, ast.ObjectCount)):
            if scope != ROW:
                raise self.error(f"{node.kind}(...) cannot be nested inside {scope}(...)", node.pos)
            if node.condition is None:
                return node
            condition = self.check(node.condition, node.kind)
            if isinstance(node, ast.ObjectMatch):
                return ast.ObjectMatch(node.kind, condition, node.pos)
            return ast.ObjectCount(node.kind, condition, node.op, node.count, node.pos)
        self.check_predicate(node, scope)
        return node

    def resolve_slice(self, node: ast.InSlice) -> ast.Expr:
        """An ids or frozen slice becomes a membership test; a live slice's query is checked and put in its place
        (limited to its dataset, if it is), so it is always evaluated as it reads now."""
        name = node.name.value
        assert isinstance(name, str), "the grammar takes a 'string' after IN SLICE"
        definition = self.slices.get(name) if self.slices is not None else None
        if definition is None:
            known = list(self.slices) if self.slices is not None else []
            raise _unknown_field(self.query, "unknown slice", name, known, node.name.pos)
        if not definition.live:
            return ast.SliceMembership(definition.id, node.pos)
        if name in self.within:
            chain = " -> ".join(repr(n) for n in (*self.within[self.within.index(name) :], name))
            raise self.error(f"slice {name!r} refers to itself: {chain}", node.name.pos)
        if len(self.within) >= MAX_SLICE_DEPTH:
            raise self.error(
                f"live slices nest more than {MAX_SLICE_DEPTH} deep here; freeze one of them", node.name.pos
            )
        inner = _Validator(
            definition.query, self.catalog, self.slices, self.limits, (*self.within, name), self.model_versions
        )
        try:
            # An empty query selects every datarow: created_at is never null.
            root = (
                inner.check(parse(definition.query, self.limits), ROW)
                if definition.query.strip()
                else ast.Exists(ast.Field(("created_at",), node.pos), node.pos)
            )
        except QueryError as error:
            failure = self.error(
                f"the query of live slice {name!r} fails at its line {error.line}, column "
                f"{error.column}: {error.message}",
                node.name.pos,
            )
            failure.extra["slice"] = {"name": name, **{k: v for k, v in error.extra.items() if k != "caret"}}
            raise failure from error
        if definition.dataset_id is None:
            return root
        in_dataset = ast.Compare(
            ast.Field(("dataset",), node.pos), "=", ast.Value(definition.dataset_id, node.pos), node.pos
        )
        return ast.And((root, in_dataset), node.pos)

    def check_predicate(self, node: ast.Predicate, scope: str) -> None:
        assert not isinstance(node, (ast.InSlice, ast.SliceMembership, ast.ObjectMatch, ast.ObjectCount))
        name = ast.field_name(node.field)
        if any("\x00" in segment for segment in node.field.path):
            raise self.error("names may not contain the NUL character", node.field.pos)
        spec = resolve_field(node.field, scope, self.catalog, self.query)
        if isinstance(node, ast.Compare):
            kind = field_type(spec, node.value)
            if node.op not in ("=", "!=") and kind not in ORDERED_TYPES:
                raise self.error(f"{name} is a {kind} field: it takes = and !=, not {node.op}", node.pos)
            self.check_value(name, spec, node.value)
            self.check_model_version(spec, node.value)
        elif isinstance(node, ast.InList):
            for value in node.values:
                self.check_value(name, spec, value)
                self.check_model_version(spec, value)
        elif isinstance(node, ast.Between):
            if literal_type(node.low) != literal_type(node.high):
                raise self.error(
                    f"BETWEEN needs two values of one type, not a {literal_type(node.low)} and a "
                    f"{literal_type(node.high)}",
                    node.high.pos,
                )
            for value in (node.low, node.high):
                if field_type(spec, value) not in ORDERED_TYPES:
                    raise self.error(
                        f"{name} is a {field_type(spec, value)} field: BETWEEN needs a string, "
                        f"number or datetime field",
                        node.pos,
                    )
                self.check_value(name, spec, value)
        elif isinstance(node, ast.Like):
            if (spec.type or "string") not in TEXT_TYPES:
                raise self.error(f"{name} is a {spec.type} field: LIKE needs a string field", node.pos)
            self.check_value(name, spec, node.pattern)
            assert isinstance(node.pattern.value, str), "the grammar takes a 'string' after LIKE"
            if (len(node.pattern.value) - len(node.pattern.value.rstrip("\\"))) % 2:
                raise self.error(
                    "a LIKE pattern cannot end with a lone backslash (\\ escapes the next character)", node.pattern.pos
                )
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
        if isinstance(value.value, str) and "\x00" in value.value:
            raise self.error("strings may not contain the NUL character", value.pos)
        expected = spec.type
        if expected is None or expected == given:
            return
        if expected in ("tags", "class", "model") and given == "string":
            return
        if expected == "datetime" and isinstance(value.value, str):
            if parse_datetime(value.value) is None:
                raise self.error(
                    f"{name} is a datetime field: {value.value!r} is not an ISO 8601 date "
                    f"(e.g. '2024-05-01' or '2024-05-01T10:00:00Z')",
                    value.pos,
                )
            return
        shown = "string" if expected in ("tags", "class", "model") else expected
        raise self.error(f"type mismatch: {name} is a {shown} field but {_shown(value)} is a {given}", value.pos)

    def check_model_version(self, spec: FieldSpec, value: ast.Value) -> None:
        """`model = ...` names one version, 'name@version', that exists: anything else would silently match nothing."""
        if spec.kind != "model":
            return
        assert isinstance(value.value, str), "check_value lets only strings through to the model field"
        name, at, version = value.value.rpartition("@")
        if not (at and name and version):
            raise self.error(
                f"model takes 'name@version', e.g. 'yolo@8.1': {value.value!r} names no version", value.pos
            )
        if self.model_versions is not None and value.value not in self.model_versions:
            raise _unknown_field(self.query, "unknown model version", value.value, self.model_versions, value.pos)


def _shown(value: ast.Value) -> str:
    if isinstance(value.value, bool):
        return "true" if value.value else "false"
    return repr(value.value)


def validate(
    root: ast.Expr,
    *,
    catalog: dict[str, str],
    text: str,
    slices: Mapping[str, SliceDefinition] | None = None,
    limits: QueryLimits = DEFAULT_LIMITS,
    model_versions: Set[str] | None = None,
) -> ValidQuery:
    """Check the tree against the catalog (metadata path -> type) and resolve `IN SLICE` names with `slices` (name
    -> definition; without it every slice name is unknown), parsing live slices' queries within `limits`; with
    `model_versions` ('name@version' of the project's), a model a query names must be one of them. Raises
    QueryError at the offending spot."""
    checked = _Validator(text, catalog, slices, limits, model_versions=model_versions).check(root, ROW)
    return ValidQuery(checked, dict(catalog), text)
