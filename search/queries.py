"""Query checking: a query parsed, then validated against the project's field catalog and its slices. Search, bulk
actions, slices and training all validate through here. `IN SLICE` needs the project's slices, and slices sit above
search: the slices app hands its definitions over at start-up (slices/apps.py) instead of search importing it."""

from collections.abc import Callable, Mapping

from django.conf import settings

from datasets.selectors import field_catalog_types, model_version_refs
from mlops.exceptions import ApplicationError
from search.ql import QueryError, parse, validate
from search.ql.limits import QueryLimits
from search.ql.validation import SliceDefinition, ValidQuery


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
        )
    except QueryError as error:
        raise InvalidQuery(error) from error
