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
from search.ql.visitor import Visitor

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
EVALUATION = "evaluation"
# An evaluation run's matches (docs/query-language.md, "Evaluations"). `run` names the run, once per condition;
# `model = 'name@version'` may name it instead, and validation puts `run = <its latest succeeded run>` in its place.
EVALUATION_FIELDS = {
    "run": FieldSpec("column", "number", "run_id"),
    "side": FieldSpec("column", "string", "side"),
    "outcome": FieldSpec("column", "string", "outcome"),
    "class": FieldSpec("class", "class"),
    "predicted_class": FieldSpec("class", "class", "predicted_class_id", nullable=True),
    "iou": FieldSpec("column", "number", "iou", nullable=True),
    "score": FieldSpec("column", "number", "score", nullable=True),
}
# The values a match's side and outcome take: any other would silently match nothing.
EVALUATION_CHOICES = {"side": ("label", "prediction"), "outcome": ("tp", "fp", "fn")}
_RUN_NAMES = (("run",), ("model",))
OBJECT_FIELDS = {
    "label": _OBJECT_FIELDS,
    "prediction": {
        **_OBJECT_FIELDS,
        "score": FieldSpec("column", "number", "score"),
        "model": FieldSpec("model", "model"),
    },
    EVALUATION: EVALUATION_FIELDS,
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
class EvaluationRuns:
    """A project's evaluation runs as the evaluations app describes them: each run's id with its job's status, and
    each model version ('name@version') with its latest succeeded run's id."""

    statuses: Mapping[int, str]
    latest: Mapping[str, int]


NO_EVALUATION_RUNS = EvaluationRuns({}, {})


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
        if not rest and head in EVALUATION_FIELDS:
            raise _error(
                query,
                f"{name!r} is a field of evaluation matches: write evaluation(run = <id> AND {name} ...)",
                field.pos,
            )
        raise _unknown_field(
            query, "unknown field", name, [*ROW_FIELDS, *(f"metadata.{p}" for p in catalog)], field.pos
        )
    fields = OBJECT_FIELDS[scope]
    if scope == EVALUATION and (rest or head not in fields):
        raise _unknown_field(query, "unknown evaluation field", name, fields, field.pos)
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


class _Validator(Visitor[[str], ast.Expr]):
    def __init__(
        self,
        query: str,
        catalog: dict[str, str],
        slices: Mapping[str, SliceDefinition] | None,
        limits: QueryLimits,
        within: tuple[str, ...] = (),
        model_versions: Set[str] | None = None,
        evaluation_runs: EvaluationRuns = NO_EVALUATION_RUNS,
    ):
        self.query = query
        self.catalog = catalog
        self.slices = slices
        self.limits = limits
        self.model_versions = model_versions
        self.evaluation_runs = evaluation_runs
        self.within = within  # the live slices being inlined, outermost first

    def error(self, message: str, pos: ast.Pos) -> QueryError:
        return _error(self.query, message, pos)

    # Each visit returns the node as engines compile it: the same tree, with every `IN SLICE` resolved.

    def visit_And(self, node: ast.And, scope: str) -> ast.Expr:
        return ast.And(tuple(self.visit(item, scope) for item in node.items), node.pos)

    def visit_Or(self, node: ast.Or, scope: str) -> ast.Expr:
        return ast.Or(tuple(self.visit(item, scope) for item in node.items), node.pos)

    def visit_Not(self, node: ast.Not, scope: str) -> ast.Expr:
        return ast.Not(self.visit(node.item, scope), node.pos)

    def visit_InSlice(self, node: ast.InSlice, scope: str) -> ast.Expr:
        if scope != ROW:
            raise self.error(f"IN SLICE selects datarows: it cannot be used inside {scope}(...)", node.pos)
        return self.resolve_slice(node)

    def visit_ObjectMatch(self, node: ast.ObjectMatch, scope: str) -> ast.Expr:
        self.check_object_scope(node, scope)
        if node.kind == EVALUATION:
            return ast.ObjectMatch(node.kind, self.evaluation_condition(node), node.pos)
        return ast.ObjectMatch(node.kind, self.visit(node.condition, node.kind), node.pos)

    def visit_ObjectCount(self, node: ast.ObjectCount, scope: str) -> ast.Expr:
        self.check_object_scope(node, scope)
        if node.kind == EVALUATION:
            return ast.ObjectCount(node.kind, self.evaluation_condition(node), node.op, node.count, node.pos)
        if node.condition is None:
            return node
        return ast.ObjectCount(node.kind, self.visit(node.condition, node.kind), node.op, node.count, node.pos)

    def check_object_scope(self, node: ast.ObjectMatch | ast.ObjectCount, scope: str) -> None:
        if scope != ROW:
            raise self.error(f"{node.kind}(...) cannot be nested inside {scope}(...)", node.pos)

    def evaluation_condition(self, node: ast.ObjectMatch | ast.ObjectCount) -> ast.Expr:
        """An evaluation condition names its run once, `run = <id>` or `model = 'name@version'` AND-ed with the
        rest, so every match it tests is of one run (and the plan starts from the run's index). It comes back as
        engines compile it: `run = <id>` first, a model replaced by the id of its latest succeeded run."""
        conjuncts = _conjuncts(node.condition) if node.condition is not None else []
        named = next((c for c in conjuncts if isinstance(c, ast.Compare) and _names_run(c)), None)
        if named is None:
            raise self.error(
                "evaluation(...) and COUNT(evaluation WHERE ...) name their run: add run = <id> or "
                "model = 'name@version', AND-ed with the rest of the condition",
                node.pos,
            )
        run = ast.Compare(
            ast.Field(("run",), named.field.pos), "=", ast.Value(self.evaluation_run(named), named.value.pos), named.pos
        )
        rest = tuple(self.visit(c, EVALUATION) for c in conjuncts if c is not named)
        return ast.And((run, *rest), run.pos) if rest else run

    def evaluation_run(self, node: ast.Compare) -> int:
        """The id of the succeeded run that `run = <id>` or `model = 'name@version'` names; QueryError naming it
        when there is none in the project."""
        value = node.value
        if node.field.path == ("run",):
            if type(value.value) is not int:
                raise self.error(f"run takes an evaluation run id, a whole number, not {_shown(value)}", value.pos)
            status = self.evaluation_runs.statuses.get(value.value)
            if status is None:
                raise self.error(f"unknown evaluation run {value.value}: the project has no run of that id", value.pos)
            if status != "succeeded":
                raise self.error(
                    f"evaluation run {value.value} has not succeeded (its job is {status}): it has no matches to query",
                    value.pos,
                )
            return value.value
        spec = FieldSpec("model", "model")
        self.check_value("model", spec, value)
        self.check_model_version(spec, value)
        latest = self.evaluation_runs.latest.get(str(value.value))
        if latest is None:
            raise self.error(
                f"model version {value.value!r} has no succeeded evaluation run in this project", value.pos
            )
        return latest

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
            definition.query,
            self.catalog,
            self.slices,
            self.limits,
            (*self.within, name),
            self.model_versions,
            self.evaluation_runs,
        )
        try:
            # An empty query selects every datarow: created_at is never null.
            root = (
                inner.visit(parse(definition.query, self.limits), ROW)
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

    def field_spec(self, node: ast.Predicate, scope: str) -> FieldSpec:
        """The spec of the field a predicate tests; QueryError if it names none."""
        assert not isinstance(node, (ast.InSlice, ast.SliceMembership, ast.ObjectMatch, ast.ObjectCount))
        if any("\x00" in segment for segment in node.field.path):
            raise self.error("names may not contain the NUL character", node.field.pos)
        if scope == EVALUATION and node.field.path in _RUN_NAMES:
            raise self.error(
                f"{ast.field_name(node.field)} names the run once, as run = <id> or model = 'name@version' AND-ed "
                "with the rest of the condition",
                node.field.pos,
            )
        return resolve_field(node.field, scope, self.catalog, self.query)

    def visit_Exists(self, node: ast.Exists, scope: str) -> ast.Expr:
        self.field_spec(node, scope)
        return node

    def visit_Compare(self, node: ast.Compare, scope: str) -> ast.Expr:
        spec, name = self.field_spec(node, scope), ast.field_name(node.field)
        kind = field_type(spec, node.value)
        if node.op not in ("=", "!=") and kind not in ORDERED_TYPES:
            raise self.error(f"{name} is a {kind} field: it takes = and !=, not {node.op}", node.pos)
        self.check_value(name, spec, node.value)
        self.check_model_version(spec, node.value)
        self.check_choice(scope, name, node.value)
        return node

    def visit_InList(self, node: ast.InList, scope: str) -> ast.Expr:
        spec, name = self.field_spec(node, scope), ast.field_name(node.field)
        for value in node.values:
            self.check_value(name, spec, value)
            self.check_model_version(spec, value)
            self.check_choice(scope, name, value)
        return node

    def check_choice(self, scope: str, name: str, value: ast.Value) -> None:
        """An evaluation match's side and outcome take a few values; a typo would silently match nothing."""
        choices = EVALUATION_CHOICES.get(name, ()) if scope == EVALUATION else ()
        if choices and value.value not in choices:
            raise self.error(f"{name} is one of {', '.join(repr(c) for c in choices)}, not {_shown(value)}", value.pos)

    def visit_Between(self, node: ast.Between, scope: str) -> ast.Expr:
        spec, name = self.field_spec(node, scope), ast.field_name(node.field)
        if literal_type(node.low) != literal_type(node.high):
            raise self.error(
                f"BETWEEN needs two values of one type, not a {literal_type(node.low)} and a {literal_type(node.high)}",
                node.high.pos,
            )
        for value in (node.low, node.high):
            if field_type(spec, value) not in ORDERED_TYPES:
                raise self.error(
                    f"{name} is a {field_type(spec, value)} field: BETWEEN needs a string, number or datetime field",
                    node.pos,
                )
            self.check_value(name, spec, value)
        return node

    def visit_Like(self, node: ast.Like, scope: str) -> ast.Expr:
        spec, name = self.field_spec(node, scope), ast.field_name(node.field)
        if (spec.type or "string") not in TEXT_TYPES:
            raise self.error(f"{name} is a {spec.type} field: LIKE needs a string field", node.pos)
        self.check_value(name, spec, node.pattern)
        assert isinstance(node.pattern.value, str), "the grammar takes a 'string' after LIKE"
        if (len(node.pattern.value) - len(node.pattern.value.rstrip("\\"))) % 2:
            raise self.error(
                "a LIKE pattern cannot end with a lone backslash (\\ escapes the next character)", node.pattern.pos
            )
        return node

    def visit_Under(self, node: ast.Under, scope: str) -> ast.Expr:
        spec, name = self.field_spec(node, scope), ast.field_name(node.field)
        if spec.kind != "class":
            raise self.error(f"UNDER works on class only, not on {name}", node.pos)
        self.check_value(name, spec, node.value)
        return node

    def visit_Match(self, node: ast.Match, scope: str) -> ast.Expr:
        spec, name = self.field_spec(node, scope), ast.field_name(node.field)
        if spec.kind != "metadata" or spec.type != "string":
            raise self.error(f"MATCH needs a string metadata field, not {name}", node.pos)
        self.check_value(name, spec, node.text)
        return node

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


def _conjuncts(node: ast.Expr) -> list[ast.Expr]:
    """The parts of a condition AND-ed at its top level (nested ANDs flattened)."""
    if isinstance(node, ast.And):
        return [part for item in node.items for part in _conjuncts(item)]
    return [node]


def _names_run(node: ast.Compare) -> bool:
    return node.op == "=" and node.field.path in _RUN_NAMES


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
    evaluation_runs: EvaluationRuns = NO_EVALUATION_RUNS,
) -> ValidQuery:
    """Check the tree against the catalog (metadata path -> type) and resolve `IN SLICE` names with `slices` (name
    -> definition; without it every slice name is unknown), parsing live slices' queries within `limits`; with
    `model_versions` ('name@version' of the project's), a model a query names must be one of them. The runs that
    evaluation conditions name resolve with `evaluation_runs` (without it every run is unknown). Raises
    QueryError at the offending spot."""
    checked = _Validator(
        text, catalog, slices, limits, model_versions=model_versions, evaluation_runs=evaluation_runs
    ).visit(root, ROW)
    return ValidQuery(checked, dict(catalog), text)
