"""Query checking: a query parsed, then validated against the project's field catalog, its slices and its evaluation
runs. Search, bulk actions, slices and training all validate through here. `IN SLICE` needs the project's slices,
and slices sit above search: the slices app hands its definitions over at start-up (slices/apps.py) instead of
search importing it."""

from collections.abc import Callable, Iterator, Mapping

from django.conf import settings
from django.db import connections

from datasets.selectors import field_catalog_types, model_version_refs
from mlops import tables
from mlops.exceptions import ApplicationError
from search.ql import QueryError, parse, validate
from search.ql.limits import QueryLimits
from search.ql.validation import EvaluationRuns, SliceDefinition, ValidQuery


class InvalidQuery(ApplicationError):
    """A query that cannot run (the query language's QueryError) as the platform's 400: its message, with its line,
    column, caret and the rest of its `extra`. Its text stays the rendered one (a failed job's error shows where)."""

    def __init__(self, error: QueryError):
        super().__init__(error.message, error.extra)
        self.error = error

    def __str__(self) -> str:
        return self.error.render()


SliceDefinitions = Callable[..., Mapping[str, SliceDefinition]]


def _no_slices(*, project_id: int, using: str) -> Mapping[str, SliceDefinition]:
    return {}


_slice_definitions: SliceDefinitions = _no_slices


def slice_definitions_register(provider: SliceDefinitions) -> None:
    """Set what resolves `IN SLICE 'name'`: `provider(project_id=..., using=...)` gives a project's slices by name."""
    global _slice_definitions
    _slice_definitions = provider


class _ProjectLookup(Mapping):
    """One value per key of a project's rows, read by `sql` (project id, key) only when a query names the key: the
    evaluations app sits above search, so its tables are read here through mlops.tables rather than its code."""

    def __init__(self, project_id: int, using: str, sql: str, keys_sql: str):
        self.project_id, self.using, self.sql, self.keys_sql = project_id, using, sql, keys_sql

    def _rows(self, sql: str, params: list) -> list[tuple]:
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, [self.project_id, *params])
            return cursor.fetchall()

    def __getitem__(self, key):
        rows = self._rows(self.sql, [key])
        if not rows:
            raise KeyError(key)
        return rows[0][0]

    def __iter__(self) -> Iterator:
        return iter([key for (key,) in self._rows(self.keys_sql, [])])

    def __len__(self) -> int:
        return len(self._rows(self.keys_sql, []))


def evaluation_runs(*, project_id: int, using: str) -> EvaluationRuns:
    """What `validate(..., evaluation_runs=...)` resolves `run = <id>` and `model = 'name@version'` with: each run of
    the project with its job's status, and each model version's latest succeeded run."""
    runs = f"{tables.EVALUATION_RUN} AS r JOIN {tables.JOB} AS j ON j.id = r.job_id"
    model = f"JOIN {tables.MODEL_VERSION} AS m ON m.id = r.model_version_id"
    latest = "j.status = 'succeeded' ORDER BY r.created_at DESC, r.id DESC"
    return EvaluationRuns(
        statuses=_ProjectLookup(
            project_id,
            using,
            f"SELECT j.status FROM {runs} WHERE r.project_id = %s AND r.id = %s",
            f"SELECT r.id FROM {runs} WHERE r.project_id = %s ORDER BY r.id",
        ),
        latest=_ProjectLookup(
            project_id,
            using,
            f"SELECT r.id FROM {runs} {model} WHERE r.project_id = %s AND m.name || '@' || m.version = %s "
            f"AND {latest} LIMIT 1",
            f"SELECT DISTINCT m.name || '@' || m.version FROM {runs} {model} WHERE r.project_id = %s "
            "AND j.status = 'succeeded' ORDER BY 1",
        ),
    )


def query_limits() -> QueryLimits:
    """The query language's size limits, as this deployment sets them."""
    return QueryLimits(
        max_query_chars=settings.SEARCH_MAX_QUERY_CHARS,
        max_depth=settings.SEARCH_MAX_DEPTH,
        max_in_values=settings.SEARCH_MAX_IN_VALUES,
        max_pattern_length=settings.SEARCH_MAX_PATTERN_LENGTH,
        max_pattern_wildcards=settings.SEARCH_MAX_PATTERN_WILDCARDS,
    )


def project_query_validate(
    *, project_id: int, query_text: str, using: str, catalog: dict[str, str] | None = None
) -> ValidQuery | None:
    """The query checked against the project's field catalog (read unless given), slices and model versions; None
    for an empty query (every row). InvalidQuery (400) for a query that cannot run."""
    if not query_text.strip():
        return None
    if catalog is None:
        catalog = field_catalog_types(project_id=project_id, using=using)
    limits = query_limits()
    try:
        return validate(
            parse(query_text, limits),
            catalog=catalog,
            text=query_text,
            slices=_slice_definitions(project_id=project_id, using=using),
            limits=limits,
            model_versions=model_version_refs(project_id=project_id, using=using),
            evaluation_runs=evaluation_runs(project_id=project_id, using=using),
        )
    except QueryError as error:
        raise InvalidQuery(error) from error
