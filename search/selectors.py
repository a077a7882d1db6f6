"""Search a project's datarows with the query language: one keyset page, a total and facets, from the configured
engine (search.engines.base.get_engine), with the rows read from PostgreSQL by id.

Reads only. Every statement runs on the alias the router gives reads (the reader unless this request wrote), in
the tenant schema the connection is set to.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connections, router
from rest_framework import status

from datasets.models import DataRow
from datasets.selectors import dataset_get, field_catalog_types
from mlops.exceptions import ApplicationError, TooManyRequests, referenced_by
from mlops.metrics import count_statement_timeout, observe_search
from mlops.slots import slot_held
from mlops.statements import statement_canceled, statement_timeout
from projects.models import Project
from search.engines.base import SearchRequest, SearchTotal, SortSpec, cursor_error, get_engine
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
    except DatabaseError as error:
        if not statement_canceled(error):
            raise
        count_statement_timeout("search")
        raise SearchTooSlow(
            f"The search ran longer than {timeout} ms (SEARCH_STATEMENT_TIMEOUT_MS) and was stopped; "
            f"narrow the query (fewer IN values, a more selective condition, a dataset, fewer "
            f"facets) or use count=estimate.",
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
