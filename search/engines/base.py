"""The search backend interface: what an engine answers for one search, whichever engine it is.

An engine returns datarow ids only; search.selectors reads the rows from PostgreSQL by id. Engines are chosen by
settings.SEARCH_ENGINE ("postgres", the embedded default, or "elasticsearch").
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from mlops.exceptions import ApplicationError
from search.ql.validation import ValidQuery

SORT_FIELDS = ("id", "created_at", "prediction.score")
FACET_SIZE = 20
FACET_OBJECT_FIELDS = ("label.class", "prediction.class")
FACET_METADATA_TYPES = ("string", "boolean", "number")
METADATA_SORT_TYPES = ("number", "string", "datetime", "boolean")


@dataclass(frozen=True)
class SortSpec:
    """A page order: `field` is id, created_at, metadata.<catalog path> or prediction.score (the row's highest score
    among its predictions of `model`, and of `class_name` when given); id breaks ties in the same direction, and
    rows without a value come last in both directions."""

    field: str = "id"
    descending: bool = False
    model: str | None = None
    class_name: str | None = None

    @property
    def token(self) -> str:
        return ("-" if self.descending else "") + self.field

    @classmethod
    def parse(cls, token: str, *, model: str | None = None, class_name: str | None = None) -> "SortSpec":
        return cls(token.removeprefix("-"), token.startswith("-"), model, class_name)

    def metadata_path(self) -> str | None:
        return self.field.removeprefix("metadata.") if self.field.startswith("metadata.") else None

    def value_type(self, catalog: dict[str, str]) -> str | None:
        """The type of the sort key (None for id), or a 400 naming what is wrong with the sort."""
        path = self.metadata_path()
        if path is not None:
            if catalog.get(path) not in METADATA_SORT_TYPES:
                raise sort_error(f"Cannot sort by {self.field!r}: it is not a metadata path of the project's catalog.")
            return catalog[path]
        if self.field not in SORT_FIELDS:
            raise sort_error(f"Cannot sort by {self.field!r}: use id, created_at, metadata.<path> or prediction.score.")
        if self.field == "prediction.score":
            if not self.model:
                raise sort_error("Sorting by prediction.score needs sort_model ('name@version').")
            return "number"
        if self.model or self.class_name:
            raise sort_error("sort_model and sort_class only go with sorting by prediction.score.")
        return "datetime" if self.field == "created_at" else None


def facet_metadata_path(facet: str, catalog: dict[str, str]) -> str | None:
    """The catalog path of a metadata facet, None for tags and classes; a 400 for anything else."""
    if facet == "tags" or facet in FACET_OBJECT_FIELDS:
        return None
    path = facet.removeprefix("metadata.")
    if not facet.startswith("metadata.") or catalog.get(path) not in FACET_METADATA_TYPES:
        raise ApplicationError(
            f"Cannot facet on {facet!r}: use label.class, prediction.class, tags or a string, "
            f"boolean or number metadata path of the project.",
            {"fields": {"facets": [f"{facet!r} is not a facet field"]}},
        )
    return path


def sort_error(message: str) -> ApplicationError:
    return ApplicationError(message, {"fields": {"sort": [message]}})


def cursor_error(message: str) -> ApplicationError:
    return ApplicationError(message, {"fields": {"cursor": [message]}})


@dataclass(frozen=True)
class SearchTotal:
    value: int
    relation: str  # "eq": the exact count; "gte": at least value


@dataclass(frozen=True)
class SearchRequest:
    tenant_schema: str
    project_id: int
    query: ValidQuery | None
    catalog: dict[str, str]
    dataset_id: int | None
    sort: SortSpec
    # Where the previous page ended, as the engine gave it: (its JSON sort value, the last row's id).
    after: tuple[object, int] | None
    limit: int
    count: str  # "exact", or "estimate": exact up to estimate_cap, else {estimate_cap, "gte"}
    estimate_cap: int
    facets: tuple[str, ...]


@dataclass(frozen=True)
class EnginePage:
    ids: list[int]
    next_after: tuple[object, int] | None  # JSON-ready, for the cursor
    total: SearchTotal
    facets: dict[str, list[dict]]
    # True when the facets counted a sample of the matches (count=estimate past the cap), not every match.
    facets_sampled: bool = False


@dataclass(frozen=True)
class StatisticsRequest:
    tenant_schema: str
    project_id: int
    query: ValidQuery | None
    dataset_id: int | None
    statistics: tuple  # of search.engines.statistics.Statistic, checked
    max_values: int  # SEARCH_STATISTICS_MAX_VALUES: distinct values one count may have


class SearchEngine(Protocol):
    name: str

    def search(self, request: SearchRequest, *, using: str) -> EnginePage:
        """One page of matching datarow ids in the request's order after `request.after`, the total and facets."""

    def statistics(self, request: StatisticsRequest, *, using: str) -> list[dict]:
        """Each statistic over the matches, in order (search.engines.statistics.statistic_result)."""

    def iter_matching_ids(
        self,
        *,
        tenant_schema: str,
        project_id: int,
        query: ValidQuery | None,
        dataset_id: int | None = None,
        batch_size: int = 1000,
        using: str,
    ) -> Iterator[list[int]]:
        """Every matching datarow id, in id order, in batches (slice freezing, bulk actions)."""


def get_engine(name: str | None = None) -> SearchEngine:
    name = name or settings.SEARCH_ENGINE
    if name == "postgres":
        from search.engines.postgres_search import PostgresEngine

        return PostgresEngine()
    if name == "elasticsearch":
        from search.engines.elasticsearch_engine import ElasticsearchEngine

        return ElasticsearchEngine()
    raise ValueError(f"unknown search engine {name!r}: postgres or elasticsearch")
