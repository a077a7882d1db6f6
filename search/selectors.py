"""Search a project's datarows with the query language: one keyset page, a total and facets, from the configured
engine (search.engines.base.get_engine), with the rows read from PostgreSQL by id.

Reads only. Every statement runs on the alias the router gives reads (the reader unless this request wrote), in
the tenant schema the connection is set to.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connections, router
from rest_framework import status

from datasets.models import DataRow
from datasets.selectors import dataset_get, field_catalog_types, model_version_refs
from mlops import tables
from mlops.exceptions import ApplicationError, TooManyRequests, referenced_by
from mlops.metrics import count_statement_timeout, observe_search
from mlops.slots import slot_held
from mlops.statements import statement_canceled, statement_timeout
from projects.models import Project
from search.engines.base import SearchRequest, SearchTotal, SortSpec, StatisticsRequest, cursor_error, get_engine
from search.engines.statistics import Statistic, statistic_check
from search.queries import project_query_validate

# An estimate counts at most this many matches: enough to say "more than 10,000" without scanning them all.
ESTIMATE_CAP = 10_000


class SearchTooSlow(ApplicationError):
    """A search that ran into SEARCH_STATEMENT_TIMEOUT_MS. 422, not 503: the same query would fail again, so the
    caller must change it (clients and proxies retry a 503 as it is, which would only repeat the load)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


def _too_many_searches() -> TooManyRequests:
    limit = settings.SEARCH_MAX_CONCURRENT_PER_TENANT
    return TooManyRequests(
        f"This tenant already runs {limit} searches at once (SEARCH_MAX_CONCURRENT_PER_TENANT); "
        f"retry when one has finished.",
        {"limit": "SEARCH_MAX_CONCURRENT_PER_TENANT", "max": limit},
        retry_after=1,
    )


@dataclass(frozen=True)
class SearchCursor:
    """Where a page ended, for one sort: the engine's sort value of its last row (None for id) and that row's id."""

    sort: SortSpec
    after_value: object
    after_id: int


@dataclass(frozen=True)
class SearchResult:
    results: list[DataRow]
    next_cursor: SearchCursor | None
    total: SearchTotal
    facets: dict[str, list[dict]]
    facets_sampled: bool  # counted over the first ESTIMATE_CAP matches (count=estimate, more matches than that)
    took_ms: int


def search_datarows(
    *,
    project: Project,
    query_text: str,
    dataset_id: int | None = None,
    limit: int = 50,
    sort: SortSpec = SortSpec(),
    cursor: SearchCursor | None = None,
    count: str = "exact",
    facets: tuple[str, ...] = (),
) -> SearchResult:
    """One page of the project's (or one dataset's) datarows matching `query_text` (empty: all), in `sort` order
    after `cursor`, with the total ("exact", or "estimate": exact up to ESTIMATE_CAP) and the counts of each
    facet's values (with "estimate" and more than ESTIMATE_CAP matches, an engine may count them over a sample:
    facets_sampled). Ids the engine returns whose rows are gone by now (deleted meanwhile) are left out.

    At most SEARCH_MAX_FACETS facets; at most SEARCH_MAX_CONCURRENT_PER_TENANT searches of a tenant at once
    (TooManyRequests past that), each statement under SEARCH_STATEMENT_TIMEOUT_MS (SearchTooSlow when one reaches
    it)."""
    started = time.monotonic()
    if len(facets) > settings.SEARCH_MAX_FACETS:
        message = f"At most {settings.SEARCH_MAX_FACETS} facets per search (SEARCH_MAX_FACETS)."
        raise ApplicationError(
            message, {"limit": "SEARCH_MAX_FACETS", "max": settings.SEARCH_MAX_FACETS, "fields": {"facets": [message]}}
        )
    using = router.db_for_read(DataRow)
    with _search_bounds(using, hint="fewer facets) or use count=estimate"):
        return _search(
            project=project,
            query_text=query_text,
            dataset_id=dataset_id,
            limit=limit,
            sort=sort,
            cursor=cursor,
            count=count,
            facets=facets,
            using=using,
            started=started,
        )


@contextmanager
def _search_bounds(using: str, *, hint: str) -> Iterator[None]:
    """A search slot of the tenant held, and every statement under SEARCH_STATEMENT_TIMEOUT_MS (SearchTooSlow when
    one reaches it, with `hint` closing its advice)."""
    timeout = settings.SEARCH_STATEMENT_TIMEOUT_MS
    try:
        with (
            slot_held(
                key=f"search:{connections[using].schema_name}",
                limit=settings.SEARCH_MAX_CONCURRENT_PER_TENANT,
                lease_seconds=settings.SEARCH_SLOT_LEASE_SECONDS,
                refused=_too_many_searches,
            ),
            statement_timeout(using, timeout),
        ):
            yield
    except DatabaseError as error:
        if not statement_canceled(error):
            raise
        count_statement_timeout("search")
        raise SearchTooSlow(
            f"The search ran longer than {timeout} ms (SEARCH_STATEMENT_TIMEOUT_MS) and was stopped; "
            f"narrow the query (fewer IN values, a more selective condition, a dataset, {hint}.",
            {"limit": "SEARCH_STATEMENT_TIMEOUT_MS", "max": timeout},
        ) from error


def _search(
    *,
    project: Project,
    query_text: str,
    dataset_id: int | None,
    limit: int,
    sort: SortSpec,
    cursor: SearchCursor | None,
    count: str,
    facets: tuple[str, ...],
    using: str,
    started: float,
) -> SearchResult:
    if dataset_id is not None:
        with referenced_by("dataset"):
            dataset_get(project=project, dataset_id=dataset_id)
    if cursor is not None and cursor.sort != sort:
        raise cursor_error("This cursor belongs to another sort; start again without a cursor.")
    catalog = field_catalog_types(project_id=project.pk, using=using)
    query = project_query_validate(project_id=project.pk, query_text=query_text, using=using, catalog=catalog)
    request = SearchRequest(
        tenant_schema=connections[using].schema_name,
        project_id=project.pk,
        query=query,
        catalog=catalog,
        dataset_id=dataset_id,
        sort=sort,
        after=(cursor.after_value, cursor.after_id) if cursor is not None else None,
        limit=limit,
        count=count,
        estimate_cap=ESTIMATE_CAP,
        facets=facets,
    )
    page = get_engine().search(request, using=using)
    by_id = DataRow.objects.using(using).filter(dataset__project_id=project.pk).in_bulk(page.ids)
    next_cursor = SearchCursor(sort, *page.next_after) if page.next_after is not None else None
    observe_search(engine=settings.SEARCH_ENGINE, count=count, seconds=time.monotonic() - started)
    return SearchResult(
        [by_id[row_id] for row_id in page.ids if row_id in by_id],
        next_cursor,
        page.total,
        page.facets,
        page.facets_sampled,
        round((time.monotonic() - started) * 1000),
    )


@dataclass(frozen=True)
class StatisticsResult:
    statistics: list[dict]
    took_ms: int


def _limit_error(key: str, message: str, setting: str, maximum: int) -> ApplicationError:
    return ApplicationError(message, {"limit": setting, "max": maximum, "fields": {key: [message]}})


def statistics_count_check(count: int) -> None:
    """At most SEARCH_MAX_STATISTICS statistics in one request (checked before each is, by the API)."""
    if count > settings.SEARCH_MAX_STATISTICS:
        maximum = settings.SEARCH_MAX_STATISTICS
        raise _limit_error(
            "statistics",
            f"At most {maximum} statistics per request (SEARCH_MAX_STATISTICS).",
            "SEARCH_MAX_STATISTICS",
            maximum,
        )


def _statistics_check(
    *, project: Project, statistics: tuple[Statistic, ...], catalog: dict[str, str], using: str
) -> None:
    """A 400 naming the statistic's key for anything that cannot run, before any statement over the matches."""
    statistics_count_check(len(statistics))
    names = [statistic.name for statistic in statistics]
    refs = model_version_refs(project_id=project.pk, using=using)
    for index, statistic in enumerate(statistics):
        if statistic.name in names[:index]:
            message = f"Two statistics are named {statistic.name!r}: give each its own name."
            raise ApplicationError(message, {"fields": {f"statistics[{index}].name": [message]}})
        statistic_check(statistic, index, catalog)
        if statistic.kind == "histogram" and statistic.bins > settings.SEARCH_STATISTICS_MAX_BINS:
            maximum = settings.SEARCH_STATISTICS_MAX_BINS
            raise _limit_error(
                f"statistics[{index}].bins",
                f"At most {maximum} bins (SEARCH_STATISTICS_MAX_BINS), not {statistic.bins}.",
                "SEARCH_STATISTICS_MAX_BINS",
                maximum,
            )
        if statistic.kind == "count" and statistic.limit > settings.SEARCH_STATISTICS_MAX_VALUES:
            maximum = settings.SEARCH_STATISTICS_MAX_VALUES
            raise _limit_error(
                f"statistics[{index}].limit",
                f"At most {maximum} values listed (SEARCH_STATISTICS_MAX_VALUES), not {statistic.limit}.",
                "SEARCH_STATISTICS_MAX_VALUES",
                maximum,
            )
        if statistic.model is not None and statistic.model not in refs:
            message = f"No model version {statistic.model!r} in this project ('name@version')."
            raise ApplicationError(message, {"fields": {f"statistics[{index}].model": [message]}})
        if statistic.slice_id is not None:
            _split_slice_check(
                project=project, slice_id=statistic.slice_id, key=f"statistics[{index}].slice_id", using=using
            )


def _split_slice_check(*, project: Project, slice_id: int, key: str, using: str) -> None:
    """The slice exists in the project and stores its members (ids or frozen): live slices have no splits."""
    with connections[using].cursor() as db:
        db.execute(f"SELECT kind FROM {tables.SLICE} WHERE id = %s AND project_id = %s", [slice_id, project.pk])
        found = db.fetchone()
    if found is None:
        message = f"No slice {slice_id} in this project."
    elif found[0] == "query":
        message = f"Slice {slice_id} is live: it has no stored members nor splits; freeze it first."
    else:
        return
    raise ApplicationError(message, {"fields": {key: [message]}})


def search_statistics(
    *, project: Project, query_text: str, statistics: tuple[Statistic, ...], dataset_id: int | None = None
) -> StatisticsResult:
    """Each statistic over the project's (or one dataset's) datarows matching `query_text` (empty: all), from the
    configured engine (docs/query-language.md, "Statistics"). A 400 naming the statistic for a field that cannot be
    counted or binned, a limit passed (SEARCH_MAX_STATISTICS, SEARCH_STATISTICS_MAX_BINS, SEARCH_STATISTICS_MAX_VALUES,
    which also bounds the distinct values a count may find), an unknown model version or slice; under the search's
    slot and statement timeout."""
    started = time.monotonic()
    using = router.db_for_read(DataRow)
    with _search_bounds(using, hint="fewer statistics, a given histogram range)"):
        if dataset_id is not None:
            with referenced_by("dataset"):
                dataset_get(project=project, dataset_id=dataset_id)
        catalog = field_catalog_types(project_id=project.pk, using=using)
        _statistics_check(project=project, statistics=statistics, catalog=catalog, using=using)
        query = project_query_validate(project_id=project.pk, query_text=query_text, using=using, catalog=catalog)
        request = StatisticsRequest(
            tenant_schema=connections[using].schema_name,
            project_id=project.pk,
            query=query,
            dataset_id=dataset_id,
            statistics=statistics,
            max_values=settings.SEARCH_STATISTICS_MAX_VALUES,
        )
        answers = get_engine().statistics(request, using=using)
    return StatisticsResult(answers, round((time.monotonic() - started) * 1000))
