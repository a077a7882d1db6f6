"""Compile a validated query into one PostgreSQL statement that selects the matching datarow ids.

Every value is a bound parameter. Identifiers come from the whitelists in search.ql.validation; metadata and
attribute paths become bound jsonpath parameters whose keys are JSON-quoted, so no query text reaches SQL.
Each predicate compiles to a two-valued SQL expression (never NULL), so NOT is a plain NOT
(docs/query-language.md, "Missing values").

Given a connection (`using`), the compiler first reads the ids of the project's datasets, classes and model versions
that the query names from those small tables and binds them as values: the planner then sees which class
(out of a skewed distribution) a condition is about and estimates its rows from the column statistics, where a
subquery would leave it to guess an average class and pick nested loops for a class on a third of the rows
(docs/design/search-postgres.md). Without one (compiling only), the same lookups are subqueries.
"""

import json
import operator
from decimal import Decimal

from django.db import connections

from mlops import tables
from search.engines.postgres_indexes import (
    attribute_lists,
    attribute_value,
    label_attribute_state,
    lists_predicate,
    path_index_state,
)
from search.engines.postgres_sql import TEXT_SEARCH_CONFIG, CompiledQuery, jsonpath_direct, jsonpath_values
from search.ql import ast
from search.ql.validation import ROW, FieldSpec, ValidQuery, literal_type, resolve_field, typed_value
from search.ql.visitor import Visitor

# Names in mlops.tables, read when a query compiles.
OBJECT_TABLES = {"label": "LABEL", "prediction": "PREDICTION", "evaluation": "OBJECT_MATCH"}
_COUNT_OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_JSONPATH_OPERATORS = {"=": "==", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# The expression of the index datarow_metadata_text (search/migrations/0001), written the same way so the planner
# matches it.
METADATA_WORDS = f"jsonb_to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, {{column}}, '[\"string\"]'::jsonb)"
_NOT_NULL = ' ? (@.type() != "null")'


# The conditions the typed value of a catalog attribute answers, by its value type (the literal types they compare).
_ATTRIBUTE_TYPES = {"boolean": "boolean", "number": "number", "enum": "string"}


def _fits_attribute_type(node: ast.Predicate, value_type: str) -> bool:
    """Equality and IN of values of the catalog type, and for numbers the ordered comparisons and BETWEEN."""
    if isinstance(node, ast.Compare):
        values, ordered = [node.value], node.op != "="
    elif isinstance(node, ast.InList):
        values, ordered = list(node.values), False
    elif isinstance(node, ast.Between):
        values, ordered = [node.low, node.high], True
    else:
        return False
    if ordered and value_type != "number":
        return False
    return all(literal_type(value) == _ATTRIBUTE_TYPES[value_type] for value in values)


def _attribute_param(value: ast.Value):
    """A number as the exact decimal that the JSON path compares (its JSON text), not a binary float."""
    if isinstance(value.value, bool) or not isinstance(value.value, (int, float)):
        return value.value
    return Decimal(json.dumps(value.value))


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _jsonpath_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


class _Compiler(Visitor[[str, str], str]):
    def __init__(self, query: ValidQuery | None, project_id: int, using: str | None):
        self.query = query
        self.project_id = project_id
        self.using = using
        self.params: list = []
        # (kind, path) -> (direct index valid, lists possible): probed once per compile
        self.path_indexes: dict[tuple[str, tuple[str, ...]], tuple[bool, bool]] = {}
        # label attribute -> (catalog value type, lists possible), or None outside the catalog: read once per compile
        self.attribute_types: dict[tuple[str, ...], tuple[str, bool] | None] = {}

    def bind(self, value) -> str:
        self.params.append(value)
        return "%s"

    def bind_list(self, values) -> str:
        return "(" + ", ".join(self.bind(value) for value in values) + ")"

    def visit_And(self, node: ast.And, scope: str, alias: str) -> str:
        return "(" + " AND ".join(self.visit(item, scope, alias) for item in node.items) + ")"

    def visit_Or(self, node: ast.Or, scope: str, alias: str) -> str:
        return "(" + " OR ".join(self.visit(item, scope, alias) for item in node.items) + ")"

    def visit_Not(self, node: ast.Not, scope: str, alias: str) -> str:
        return f"(NOT {self.visit(node.item, scope, alias)})"

    def visit_ObjectMatch(self, node: ast.ObjectMatch, scope: str, alias: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {getattr(tables, OBJECT_TABLES[node.kind])} AS o "
            f"WHERE o.datarow_id = {alias}.id AND {self.visit(node.condition, node.kind, 'o')})"
        )

    def visit_SliceMembership(self, node: ast.SliceMembership, scope: str, alias: str) -> str:
        # The member table's key is (slice, datarow): one index probe per row, or a join the planner picks.
        return (
            f"EXISTS (SELECT 1 FROM {tables.SLICE_MEMBER} AS sm "
            f"WHERE sm.slice_id = {self.bind(node.slice_id)} AND sm.datarow_id = {alias}.id)"
        )

    def visit_Compare(self, node: ast.Compare, scope: str, alias: str) -> str:
        if node.op == "!=":
            return f"(NOT {self.visit(ast.Compare(node.field, '=', node.value, node.pos), scope, alias)})"
        return self.predicate(node, scope, alias)

    def predicate(self, node: ast.Predicate, scope: str, alias: str) -> str:
        """A predicate on a field, compiled by the method of its FieldSpec.kind (below), which knows the storage."""
        spec = resolve_field(node.field, scope, self.query.catalog)
        if spec.kind == "attributes" and scope == "label":
            return self._label_attribute(node, spec, alias)
        return getattr(self, f"_{spec.kind}")(node, spec, alias)

    visit_InList = visit_Between = visit_Like = visit_Exists = visit_Under = visit_Match = predicate

    def visit_ObjectCount(self, node: ast.ObjectCount, scope: str, alias: str) -> str:
        """Grouped over the object table's (class, datarow) / (model, class) indexes rather than a count per row.
        A row without matching objects has count 0, so when 0 satisfies the comparison the rows to exclude are
        the ones whose non-zero count does not. The groups keep to the project's datarows, so the set stays
        the size of the project, not of the tenant."""
        if node.kind == "evaluation":
            # Validation let only the project's runs through: their matches are of its datarows already.
            scope = "WHERE true"
        elif self.using is None:
            project = self.bind(self.project_id)
            scope = (
                f"JOIN {tables.DATAROW} AS r ON r.id = o.datarow_id "
                f"JOIN {tables.DATASET} AS s ON s.id = r.dataset_id WHERE s.project_id = {project}"
            )
        else:
            # Classes belong to one project, so its class ids scope the objects to its datarows without a join.
            ids = self.lookup_ids(tables.ONTOLOGY_CLASS, "true", [])
            scope = f"WHERE o.ontology_class_id IN {self.bind_list(ids)}" if ids else "WHERE false"
        condition = self.visit(node.condition, node.kind, "o") if node.condition is not None else "true"
        count = self.bind(node.count.value)
        grouped = (
            f"SELECT o.datarow_id FROM {getattr(tables, OBJECT_TABLES[node.kind])} AS o "
            f"{scope} AND {condition} GROUP BY o.datarow_id"
        )
        if _COUNT_OPERATORS[node.op](0, node.count.value):
            return f"({alias}.id NOT IN ({grouped} HAVING NOT (count(*) {node.op} {count})))"
        return f"({alias}.id IN ({grouped} HAVING count(*) {node.op} {count}))"

    # One method per FieldSpec.kind.

    def _column(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        column = f"{alias}.{spec.column}"
        ordered = f'{column} COLLATE "C"' if spec.type == "string" else column
        if isinstance(node, ast.Exists):
            return f"({column} IS NOT NULL)"
        if isinstance(node, ast.Compare):
            sql = f"{column if node.op == '=' else ordered} {node.op} {self.bind(typed_value(spec, node.value))}"
        elif isinstance(node, ast.InList):
            sql = f"{column} IN {self.bind_list(typed_value(spec, value) for value in node.values)}"
        elif isinstance(node, ast.Between):
            sql = (
                f"{ordered} BETWEEN {self.bind(typed_value(spec, node.low))} AND "
                f"{self.bind(typed_value(spec, node.high))}"
            )
        else:
            sql = f"{column} LIKE {self.bind(node.pattern.value)}"
        return f"coalesce({sql}, false)" if spec.nullable else f"({sql})"

    def _tags(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        # @> and && are the operators the GIN index on tags serves.
        if isinstance(node, ast.Exists):
            return f"(cardinality({alias}.tags) > 0)"
        if isinstance(node, ast.Compare):
            return f"({alias}.tags @> ARRAY[{self.bind(node.value.value)}]::text[])"
        if isinstance(node, ast.InList):
            return f"({alias}.tags && {self.bind([value.value for value in node.values])}::text[])"
        return f"EXISTS (SELECT 1 FROM unnest({alias}.tags) AS tag WHERE tag LIKE {self.bind(node.pattern.value)})"

    def _class(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        if spec.nullable:
            # An evaluation match's predicted_class: null where no prediction overlapped the label.
            assert spec.column is not None, "a nullable class field names its column"
            if isinstance(node, ast.Exists):
                return f"({alias}.{spec.column} IS NOT NULL)"
            return f"coalesce({self._lookup(node, alias, spec.column, tables.ONTOLOGY_CLASS, 'name')}, false)"
        return self._lookup(node, alias, "ontology_class_id", tables.ONTOLOGY_CLASS, "name")

    def _model(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        return self._lookup(node, alias, "model_version_id", tables.MODEL_VERSION, "name || '@' || version")

    def _lookup(self, node: ast.Predicate, alias: str, column: str, table: str, name: str) -> str:
        """Class and model conditions select ids from the project's small ontology / model table first, so the
        object table is reached through its (class, datarow) and (model version, class, datarow) indexes."""
        if isinstance(node, ast.Exists):
            return "true"
        if isinstance(node, ast.Compare):
            condition, values = f"{name} = %s", [node.value.value]
        elif isinstance(node, ast.InList):
            condition = f"{name} IN ({', '.join('%s' for _ in node.values)})"
            values = [value.value for value in node.values]
        elif isinstance(node, ast.Under):
            condition, values = (
                f"({name} = %s OR {name} LIKE %s)",
                [node.value.value, escape_like(node.value.value) + "/%"],
            )
        else:
            condition, values = f"{name} LIKE %s", [node.pattern.value]
        if self.using is not None:
            ids = self.lookup_ids(table, condition, values)
            return f"({alias}.{column} IN {self.bind_list(ids)})" if ids else "false"
        project = self.bind(self.project_id)
        self.params.extend(values)
        return f"({alias}.{column} IN (SELECT id FROM {table} WHERE project_id = {project} AND {condition}))"

    def lookup_ids(self, table: str, condition: str, values: list) -> list[int]:
        """The ids of the project's rows of a small table (datasets, classes, model versions) meeting condition."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {table} WHERE project_id = %s AND {condition} ORDER BY id", [self.project_id, *values]
            )
            return [row[0] for row in cursor.fetchall()]

    def _metadata(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        return self._json(node, spec, f"{alias}.metadata")

    def _attributes(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        return self._json(node, spec, f"{alias}.attributes")

    def _label_attribute(self, node: ast.Predicate, spec: FieldSpec, alias: str) -> str:
        """A label attribute in the project's attribute catalog, compared with values of its catalog type, is compared
        as its typed value (search_attribute_<type>, as the indexes of `manage.py search_attribute_indexes` write
        it), two-valued (`IS TRUE`, or `value IS NOT NULL AND ...`); labels holding a list there take every value
        from the JSON, a branch left out when the lists index shows none. Any other attribute condition reads the
        JSON as before: both give the same labels."""
        column = f"{alias}.attributes"
        value_type = self._attribute_type(spec.path) if self.using is not None and len(spec.path) == 1 else None
        if value_type is None or not _fits_attribute_type(node, value_type[0]):
            return self._json(node, spec, column)
        value = attribute_value(value_type[0], column)
        params = [spec.path[0], spec.path[0]]
        if value_type[0] == "boolean":
            # IS TRUE / IS FALSE, as written in the predicates of the attribute's partial indexes (two-valued too).
            wanted = {node.value.value} if isinstance(node, ast.Compare) else {item.value for item in node.values}
            held = f"{value} IS NOT NULL" if len(wanted) == 2 else f"{value} IS {'TRUE' if True in wanted else 'FALSE'}"
            params.pop()
        elif isinstance(node, ast.Compare):
            held = f"{value} IS NOT NULL AND {value} {node.op} %s"
            params.append(_attribute_param(node.value))
        elif isinstance(node, ast.InList):
            held = f"{value} IS NOT NULL AND {value} IN (" + ", ".join("%s" for _ in node.values) + ")"
            params += [_attribute_param(item) for item in node.values]
        else:
            held = f"{value} IS NOT NULL AND {value} BETWEEN %s AND %s"
            params += [_attribute_param(node.low), _attribute_param(node.high)]
        self.params += params
        if not value_type[1]:
            return f"({held})"
        lists = f"{attribute_lists(column)} AND "
        self.params.append(spec.path[0])
        return f"(({held}) OR ({lists}{self._json(node, spec, column)}))"

    def _attribute_type(self, path: tuple[str, ...]) -> tuple[str, bool] | None:
        if path not in self.attribute_types:
            self.attribute_types[path] = label_attribute_state(self.project_id, path[0], self.using)
        return self.attribute_types[path]

    def _json(self, node: ast.Predicate, spec: FieldSpec, column: str) -> str:
        """A condition holds when any value at the path satisfies it. Comparisons of strings, numbers and
        booleans are jsonpath filters under `@?`, which the GIN jsonb_path_ops index on metadata serves;
        jsonpath compares strings by code point and only values of the same JSON type."""
        values = jsonpath_values(spec.path)
        if isinstance(node, ast.Exists):
            return f"({column} @? {self.bind(values + _NOT_NULL)}::jsonpath)"
        if spec.type == "datetime" and column.endswith(".metadata") and not isinstance(node, (ast.Like, ast.Match)):
            return self._metadata_datetime(node, spec, column, values)
        if (
            isinstance(node, ast.Match)
            and column.endswith(".metadata")
            and self.using is not None
            and self._path_indexes("match", spec.path)[0]
        ):
            return self._metadata_match(node, spec, column, values)
        if isinstance(node, (ast.Like, ast.Match)) or spec.type == "datetime":
            return self._json_each(node, spec, column, values)
        if isinstance(node, ast.Compare):
            test = f"@ {_JSONPATH_OPERATORS[node.op]} {_jsonpath_literal(node.value.value)}"
        elif isinstance(node, ast.InList):
            test = " || ".join(f"@ == {_jsonpath_literal(value.value)}" for value in node.values)
        else:
            test = f"@ >= {_jsonpath_literal(node.low.value)} && @ <= {_jsonpath_literal(node.high.value)}"
        return f"({column} @? {self.bind(f'{values} ? ({test})')}::jsonpath)"

    def _metadata_datetime(self, node: ast.Predicate, spec: FieldSpec, column: str, values: str) -> str:
        """A datetime held directly at the path (through objects only, most rows) is compared as
        search_metadata_datetime(metadata, path), the expression of the per-path indexes that
        metadata_path_indexes creates; rows without one (lists on the way, or no valid datetime there) fall back
        to every value at the path, the second index's rows. Each branch is two-valued (a NULL datetime is no
        match). Compiled for a connection, the second branch is left out when the lists index shows no such row
        (a plain OR made the planner recheck the whole condition on every row the index found: three calls of the
        function per row)."""
        strict = jsonpath_direct(spec.path)
        direct = f"search_metadata_datetime({column}, {self.bind(strict)}::jsonpath)"
        # Bound in the order the placeholders appear.
        held = f"{direct} IS NOT NULL AND search_metadata_datetime({column}, {self.bind(strict)}::jsonpath)"
        if isinstance(node, ast.Compare):
            held += f" {node.op} {self.bind(typed_value(spec, node.value))}"
        elif isinstance(node, ast.InList):
            held += f" IN {self.bind_list(typed_value(spec, value) for value in node.values)}"
        else:
            held += f" BETWEEN {self.bind(typed_value(spec, node.low))} AND {self.bind(typed_value(spec, node.high))}"
        if self.using is not None and not self._path_indexes("datetime", spec.path)[1]:
            # No row holds lists there: the index answers the whole condition, with no per-row recheck.
            return f"({held})"
        lists = self._embed(lists_predicate("datetime", spec.path, column))
        return f"(({held}) OR ({lists} AND {self._json_each(node, spec, column, values)}))"

    def _metadata_match(self, node: ast.Match, spec: FieldSpec, column: str, values: str) -> str:
        """MATCH on a path with its own full-text index (metadata_path_indexes): a string held directly at the path
        is matched by that index alone, with no per-row recheck (to_tsvector of each candidate's text was most of
        the cost); the expression is never NULL, so the condition stays two-valued. Rows holding the path's strings
        in lists take every value, found by the lists index; that branch is left out when the index shows none."""
        words = (
            f"to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, coalesce(search_metadata_string({column}, "
            f"{self.bind(jsonpath_direct(spec.path))}::jsonpath), '')) @@ "
            f"plainto_tsquery('{TEXT_SEARCH_CONFIG}', {self.bind(node.text.value)})"
        )
        if not self._path_indexes("match", spec.path)[1]:
            return f"({words})"
        lists = self._embed(lists_predicate("match", spec.path, column))
        return f"(({words}) OR ({lists} AND {self._every_value(node, spec, column, values)}))"

    def _embed(self, compiled: CompiledQuery) -> str:
        """`compiled`'s SQL, its parameters bound here (so it must be written where it is embedded, in order)."""
        self.params += compiled.params
        return compiled.sql

    def _path_indexes(self, kind: str, path: tuple[str, ...]) -> tuple[bool, bool]:
        if (kind, path) not in self.path_indexes:
            self.path_indexes[kind, path] = path_index_state(kind, path, self.using)
        return self.path_indexes[kind, path]

    def _json_each(self, node: ast.Predicate, spec: FieldSpec, column: str, values: str) -> str:
        """LIKE, MATCH and datetimes need SQL on each value; a string that is not a valid timestamp is no match.

        For LIKE and MATCH, a scalar held directly at the path (through objects only: most rows) is tested as that
        one value, read by a strict jsonpath, instead of through a set-returning subquery per row (MATCH on a
        caption at 1M rows: see docs/design/search-postgres.md); rows holding a list or an object there, or with
        lists on the way, take every value at the path. Parameters are bound in the order their placeholders
        appear."""
        candidates = ""
        if isinstance(node, ast.Match) and column.endswith(".metadata"):
            # Rows whose metadata strings hold every word, from the GIN index datarow_metadata_text.
            candidates = (
                f"{METADATA_WORDS.format(column=column)} @@ "
                f"plainto_tsquery('{TEXT_SEARCH_CONFIG}', {self.bind(node.text.value)}) AND "
            )
        if isinstance(node, (ast.Like, ast.Match)):

            def direct() -> str:  # binds the path each time it is written
                path = self.bind(jsonpath_direct(spec.path))
                return f"jsonb_path_query_first({column}, {path}::jsonpath, '{{}}', true)"

            direct_type = f"jsonb_typeof({direct()})"
            held = self._string_test(node, spec, f"({direct()} #>> '{{}}')")
            every = self._every_value(node, spec, column, values)
            return (
                f"({candidates}CASE {direct_type} WHEN 'string' THEN {held} WHEN 'number' THEN false "
                f"WHEN 'boolean' THEN false WHEN 'null' THEN false ELSE {every} END)"
            )
        return f"({candidates}{self._every_value(node, spec, column, values)})"

    def _every_value(self, node: ast.Predicate, spec: FieldSpec, column: str, values: str) -> str:
        path = self.bind(values)
        test = self._string_test(node, spec, "(v.value #>> '{}')")
        return (
            f"EXISTS (SELECT 1 FROM jsonb_path_query({column}, {path}::jsonpath) AS v(value) "
            f"WHERE jsonb_typeof(v.value) = 'string' AND {test})"
        )

    def _string_test(self, node: ast.Predicate, spec: FieldSpec, text: str) -> str:
        """The test of one string value `text` (SQL text) for LIKE, MATCH or a datetime comparison (which repeats
        `text`: it must hold no placeholder)."""
        if isinstance(node, ast.Like):
            return f"{text} LIKE {self.bind(node.pattern.value)}"
        if isinstance(node, ast.Match):
            return (
                f"to_tsvector('{TEXT_SEARCH_CONFIG}', {text}) @@ "
                f"plainto_tsquery('{TEXT_SEARCH_CONFIG}', {self.bind(node.text.value)})"
            )
        moment = f"{text}::timestamptz"
        if isinstance(node, ast.Compare):
            comparison = f"{moment} {node.op} {self.bind(typed_value(spec, node.value))}"
        elif isinstance(node, ast.InList):
            comparison = f"{moment} IN {self.bind_list(typed_value(spec, value) for value in node.values)}"
        else:
            comparison = (
                f"{moment} BETWEEN {self.bind(typed_value(spec, node.low))} AND "
                f"{self.bind(typed_value(spec, node.high))}"
            )
        return f"CASE WHEN pg_input_is_valid({text}, 'timestamptz') THEN {comparison} ELSE false END"


# The object fields the object tables' indexes hold (docs/design/search-postgres.md, "Indexes used"): a condition on
# these alone is answered from the indexes.
_INDEXED_OBJECT_FIELDS = {
    "label": {"class"},
    "prediction": {"class", "model", "score"},
    "evaluation": {"run", "outcome", "class", "iou", "score", "predicted_class"},
}


class _ReadsObjectRows(Visitor[[str | None], bool]):
    """Whether a node tests an object field that no index holds; scope: the object kind, None outside one."""

    def visit_And(self, node: ast.And, scope: str | None) -> bool:
        return any(self.visit(item, scope) for item in node.items)

    visit_Or = visit_And

    def visit_Not(self, node: ast.Not, scope: str | None) -> bool:
        return self.visit(node.item, scope)

    def visit_ObjectMatch(self, node: ast.ObjectMatch, scope: str | None) -> bool:
        return self.visit(node.condition, node.kind)

    def visit_ObjectCount(self, node: ast.ObjectCount, scope: str | None) -> bool:
        return node.condition is not None and self.visit(node.condition, node.kind)

    def visit_SliceMembership(self, node: ast.SliceMembership, scope: str | None) -> bool:
        return False

    def predicate(self, node: ast.Predicate, scope: str | None) -> bool:
        return scope is not None and node.field.path[0] not in _INDEXED_OBJECT_FIELDS[scope]

    visit_Compare = visit_InList = visit_Between = visit_Like = visit_Exists = visit_Under = visit_Match = predicate


def reads_object_rows(query: ValidQuery | None) -> bool:
    """Whether an object condition tests a field no index holds (a box, an area, a kind, an attribute): PostgreSQL
    then reads the rows of the object table, a scan of the table's size however few objects match."""

    return query is not None and _ReadsObjectRows().visit(query.root, None)


def compile_filter(
    query: ValidQuery | None, *, project_id: int, dataset_id: int | None = None, using: str | None = None
) -> CompiledQuery:
    """The WHERE condition, over the datarows `AS d`, of the project's datarows (or one dataset's) that match;
    no query matches them all. For statements other than the id list: pages, counts, facets. With `using`, the
    ids of the datasets, classes and model versions named are read there first and bound as values."""
    compiler = _Compiler(query, project_id, using)
    if dataset_id is None and using is not None:
        datasets = compiler.lookup_ids(tables.DATASET, "true", [])
        scope = f"d.dataset_id IN {compiler.bind_list(datasets)}" if datasets else "false"
    elif dataset_id is None:
        scope = f"d.dataset_id IN (SELECT id FROM {tables.DATASET} WHERE project_id = {compiler.bind(project_id)})"
    else:
        scope = f"d.dataset_id = {compiler.bind(dataset_id)}"
    condition = compiler.visit(query.root, ROW, "d") if query is not None else "true"
    return CompiledQuery(f"{scope} AND {condition}", compiler.params)
