"""Compile a validated query into an Elasticsearch query (elasticsearch.dsl) over the documents of
search/engines/elasticsearch_documents.py, with the semantics of docs/query-language.md.

Each predicate compiles to a query that matches exactly the documents where it is true (a missing or null value
is simply absent from the document), so NOT is `must_not`, and `!=` / NOT IN are NOT of `=` / IN: they match rows
where the field is missing, as the reference and PostgreSQL do. Nothing is scored except object counts.
"""

from elasticsearch import dsl

from search.engines.elasticsearch_documents import (
    NESTED_PATHS,
    OBJECT_PATHS,
    TEXT_VALUE_GAP,
    attribute_field,
    date_text,
    encode_path,
    metadata_field,
)
from search.ql import ast
from search.ql.text import text_words
from search.ql.validation import ROW, FieldSpec, ValidQuery, field_type, resolve_field, typed_value
from search.ql.visitor import Visitor

_RANGE_OPERATORS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_ROW_COLUMNS = {"dataset_id": "dataset_id"}
# Evaluation match columns (search.ql.validation.EVALUATION_FIELDS) under their document names.
_MATCH_FIELDS = {"run_id": "run", "predicted_class_id": "predicted_class"}


def like_wildcard(pattern: str) -> str:
    """SQL LIKE as a wildcard pattern: % is *, _ is ?, and the wildcard's own specials are escaped."""
    parts, escaped = [], False
    for char in pattern:
        if escaped:
            parts.append("\\" + char if char in "*?\\" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append("*")
        elif char == "_":
            parts.append("?")
        else:
            parts.append("\\" + char if char in "*?" else char)
    return "".join(parts)


def _match_all() -> dsl.query.Query:
    return dsl.query.MatchAll()


def _match_none() -> dsl.query.Query:
    return dsl.query.MatchNone()


def _not(query: dsl.query.Query) -> dsl.query.Query:
    return dsl.query.Bool(must_not=[query])


def _at_least(kind: str, condition: dsl.query.Query, count: int) -> dsl.query.Query:
    """Rows with at least `count` objects meeting `condition`: each matching object scores exactly 1, the nested
    query sums them per row and function_score keeps the rows whose sum reaches `count`."""
    if count <= 0:
        return _match_all()
    nested = dsl.query.Nested(
        path=NESTED_PATHS[kind], score_mode="sum", query=dsl.query.ConstantScore(filter=condition, boost=1)
    )
    return dsl.query.FunctionScore(query=nested, min_score=count)


class _Compiler(Visitor[[str], dsl.query.Query]):
    def __init__(self, query: ValidQuery):
        self.query = query

    def visit_And(self, node: ast.And, scope: str) -> dsl.query.Query:
        return dsl.query.Bool(filter=[self.visit(item, scope) for item in node.items])

    def visit_Or(self, node: ast.Or, scope: str) -> dsl.query.Query:
        return dsl.query.Bool(should=[self.visit(item, scope) for item in node.items], minimum_should_match=1)

    def visit_Not(self, node: ast.Not, scope: str) -> dsl.query.Query:
        return _not(self.visit(node.item, scope))

    def visit_ObjectMatch(self, node: ast.ObjectMatch, scope: str) -> dsl.query.Query:
        return dsl.query.Nested(path=NESTED_PATHS[node.kind], query=self.visit(node.condition, node.kind))

    def visit_SliceMembership(self, node: ast.SliceMembership, scope: str) -> dsl.query.Query:
        return dsl.query.Term(slice_ids=node.slice_id)

    def visit_InSlice(self, node: ast.InSlice, scope: str) -> dsl.query.Query:
        raise ValueError("IN SLICE must be resolved by validation before compiling")

    def visit_ObjectCount(self, node: ast.ObjectCount, scope: str) -> dsl.query.Query:
        condition = self.visit(node.condition, node.kind) if node.condition is not None else _match_all()
        n = node.count.value

        def at_least(count: int) -> dsl.query.Query:
            return _at_least(node.kind, condition, count)

        if node.op == ">=":
            return at_least(n)
        if node.op == ">":
            return at_least(n + 1)
        if node.op == "<":
            return _not(at_least(n)) if n > 0 else _match_none()
        if node.op == "<=":
            return _not(at_least(n + 1))
        exactly = dsl.query.Bool(filter=[at_least(n), _not(at_least(n + 1))]) if n > 0 else _not(at_least(1))
        return exactly if node.op == "=" else _not(exactly)

    def spec_field(self, node: ast.Predicate, scope: str) -> tuple[FieldSpec, str, str | None]:
        """The predicate's field spec, the document field it reads, and the type its values compare in."""
        spec = resolve_field(node.field, scope, self.query.catalog)
        return spec, *self.field(node, spec, scope)

    def visit_Exists(self, node: ast.Exists, scope: str) -> dsl.query.Query:
        spec, field, _ = self.spec_field(node, scope)
        return self.exists(spec, scope, field)

    def visit_Under(self, node: ast.Under, scope: str) -> dsl.query.Query:
        field = self.spec_field(node, scope)[1]
        return dsl.query.Term(**{f"{field}_ancestors": node.value.value})

    def visit_Like(self, node: ast.Like, scope: str) -> dsl.query.Query:
        field = self.spec_field(node, scope)[1]
        return dsl.query.Wildcard(**{field: {"value": like_wildcard(node.pattern.value)}})

    def visit_Match(self, node: ast.Match, scope: str) -> dsl.query.Query:
        field = self.spec_field(node, scope)[1]
        return self.match(f"{field}.text", node.text.value)

    def visit_Compare(self, node: ast.Compare, scope: str) -> dsl.query.Query:
        if node.op == "!=":
            return _not(self.visit(ast.Compare(node.field, "=", node.value, node.pos), scope))
        spec, field, value_type = self.spec_field(node, scope)
        value = self.value(spec, node.value, value_type)
        if node.op == "=":
            return dsl.query.Term(**{field: value})
        return dsl.query.Range(**{field: {_RANGE_OPERATORS[node.op]: value}})

    def visit_InList(self, node: ast.InList, scope: str) -> dsl.query.Query:
        spec, field, value_type = self.spec_field(node, scope)
        return dsl.query.Terms(**{field: [self.value(spec, value, value_type) for value in node.values]})

    def visit_Between(self, node: ast.Between, scope: str) -> dsl.query.Query:
        spec, field, value_type = self.spec_field(node, scope)
        return dsl.query.Range(
            **{field: {"gte": self.value(spec, node.low, value_type), "lte": self.value(spec, node.high, value_type)}}
        )

    def field(self, node: ast.Predicate, spec: FieldSpec, scope: str) -> tuple[str, str | None]:
        """The document field the predicate reads, and the type its values compare in."""
        value = (
            getattr(node, "value", None)
            or getattr(node, "low", None)
            or (node.values[0] if isinstance(node, ast.InList) else None)
        )
        value_type = field_type(spec, value) if value is not None else spec.type
        prefix = "" if scope == ROW else f"{NESTED_PATHS[scope]}."
        if spec.kind == "metadata":
            return metadata_field(spec.path), value_type
        if spec.kind == "attributes":
            # LIKE reads strings; EXISTS reads the presence list, whatever the type.
            return attribute_field(
                scope, "string" if isinstance(node, ast.Like) else value_type or "string", spec.path
            ), value_type
        if spec.kind == "tags":
            return "tags", value_type
        if spec.kind in ("class", "model"):
            return f"{prefix}{_MATCH_FIELDS.get(spec.column or '', spec.kind)}", value_type
        return prefix + {**_ROW_COLUMNS, **_MATCH_FIELDS}.get(spec.column, spec.column), value_type

    def exists(self, spec: FieldSpec, scope: str, field: str) -> dsl.query.Query:
        if spec.kind == "metadata":
            return dsl.query.Term(metadata_present=encode_path(spec.path))
        if spec.kind == "attributes":
            return dsl.query.Term(**{f"{OBJECT_PATHS[scope]}.attributes.present": encode_path(spec.path)})
        if spec.kind in ("class", "model") and not spec.nullable:
            return _match_all()  # every object has a class, every prediction a model
        return dsl.query.Exists(field=field)

    @staticmethod
    def value(spec: FieldSpec, literal: ast.Value, value_type: str | None):
        if value_type == "datetime":
            # Metadata dates are `date` fields (milliseconds), columns `date_nanos` (microseconds kept).
            return date_text(typed_value(spec, literal), "milliseconds" if spec.kind == "metadata" else "microseconds")
        return typed_value(spec, literal)

    @staticmethod
    def match(field: str, text: str) -> dsl.query.Query:
        """Every word of the text in one value of the field: fewer gaps than lie between two values of a list."""
        words = sorted(text_words(text))
        if not words:
            return _match_none()
        rules = [{"match": {"query": word}} for word in words]
        rule = (
            rules[0]
            if len(rules) == 1
            else {"all_of": {"intervals": rules, "ordered": False, "max_gaps": TEXT_VALUE_GAP - 1}}
        )
        return dsl.query.Intervals(**{field: rule})


def compile_query(query: ValidQuery | None, *, dataset_id: int | None = None) -> dsl.query.Query:
    """The query selecting the matching documents of a project's index (of one dataset when given)."""
    scope = [dsl.query.Term(dataset_id=dataset_id)] if dataset_id is not None else []
    condition = [_Compiler(query).visit(query.root, ROW)] if query is not None else []
    return dsl.query.Bool(filter=[*scope, *condition])
