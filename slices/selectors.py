"""Reads of slices: one slice, a project's slices, the names queries resolve (`IN SLICE`), and members by keyset
pages with their counts. Every member read is SQL over the member table's (slice, datarow) key or, for a live
slice, the search engine's compiled condition, so a page costs the same at 1M members as at 100."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import QuerySet

from datasets.models import DataRow
from mlops import tables
from mlops.exceptions import ApplicationError, Conflict, NotFound
from projects.models import Project
from search.engines.postgres_compiler import compile_filter
from search.engines.postgres_sql import CompiledQuery
from search.ql.validation import SliceDefinition
from search.queries import project_query_validate
from slices.models import Slice, SliceMember, Split


def slice_list(*, project: Project) -> QuerySet[Slice]:
    return Slice.objects.filter(project=project).select_related("freeze_job")


def slice_get(*, project: Project, slice_id: int) -> Slice:
    found = slice_list(project=project).filter(pk=slice_id).first()
    if found is None:
        raise NotFound(f"Slice {slice_id} does not exist in project {project.pk}.")
    return found


class ProjectSliceDefinitions(Mapping[str, SliceDefinition]):
    """A project's slices by name, read one at a time as a query names them (all names only for suggestions)."""

    def __init__(self, project_id: int, using: str):
        self.project_id = project_id
        self.using = using

    def _slices(self) -> QuerySet[Slice]:
        return Slice.objects.using(self.using).filter(project_id=self.project_id)

    def __getitem__(self, name: str) -> SliceDefinition:
        found = self._slices().filter(name=name).values("id", "kind", "query", "dataset_id").first()
        if found is None:
            raise KeyError(name)
        return SliceDefinition(
            id=found["id"],
            name=name,
            live=found["kind"] == Slice.Kind.QUERY,
            query=found["query"],
            dataset_id=found["dataset_id"],
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._slices().order_by("name").values_list("name", flat=True))

    def __len__(self) -> int:
        return self._slices().count()


def slice_definitions(*, project_id: int, using: str) -> Mapping[str, SliceDefinition]:
    """What `validate(..., slices=...)` resolves `IN SLICE 'name'` with, in this project."""
    return ProjectSliceDefinitions(project_id, using)


def _split_value(split: str | None) -> int | None:
    return None if split is None else Split[split.upper()].value


def _live_condition(slice_: Slice, using: str) -> CompiledQuery:
    """The WHERE condition over the datarows `AS d` of a live slice's members as its query reads now."""
    query = project_query_validate(project_id=slice_.project_id, query_text=slice_.query, using=using)
    return compile_filter(query, project_id=slice_.project_id, dataset_id=slice_.dataset_id)


def _check_split_filter(slice_: Slice, split: str | None) -> None:
    if split is not None and slice_.kind == Slice.Kind.QUERY:
        raise ApplicationError(
            f"Slice '{slice_.name}' is live: it has no split. Freeze it first.",
            {"fields": {"split": ["Live slices have no split."]}},
        )


def slice_members_sql(*, slice: Slice, split: str | None = None, using: str = "default") -> CompiledQuery:
    """A statement selecting one column, the ids of the slice's members (of one split, if given): for other
    set-based work (combining slices, training and prediction runs) to build on."""
    _check_split_filter(slice, split)
    if slice.kind == Slice.Kind.QUERY:
        condition = _live_condition(slice, using)
        return CompiledQuery(f"SELECT d.id FROM {tables.DATAROW} AS d WHERE {condition.sql}", condition.params)
    if split is None:
        return CompiledQuery("SELECT m.datarow_id FROM slices_slicemember AS m WHERE m.slice_id = %s", [slice.pk])
    return CompiledQuery(
        "SELECT m.datarow_id FROM slices_slicemember AS m WHERE m.slice_id = %s AND m.split = %s",
        [slice.pk, _split_value(split)],
    )


@dataclass(frozen=True)
class SliceMemberPage:
    results: list[tuple[DataRow, str | None]]  # each datarow with its split's name (None: not split, or live)
    next_after_id: int | None


def slice_member_page(
    *, slice: Slice, after_id: int | None = None, limit: int = 100, split: str | None = None
) -> SliceMemberPage:
    """Members in datarow id order after `after_id`: the stored members, or a live slice's current matches."""
    _check_split_filter(slice, split)
    using = router.db_for_read(SliceMember)
    after = -1 if after_id is None else after_id
    if slice.kind == Slice.Kind.QUERY:
        condition = _live_condition(slice, using)
        sql = f"SELECT d.id, NULL FROM {tables.DATAROW} AS d WHERE {condition.sql} AND d.id > %s ORDER BY d.id LIMIT %s"
        params = [*condition.params, after, limit + 1]
    else:
        split_filter, split_params = ("", []) if split is None else (" AND m.split = %s", [_split_value(split)])
        sql = (
            f"SELECT m.datarow_id, m.split FROM slices_slicemember AS m WHERE m.slice_id = %s{split_filter} "
            f"AND m.datarow_id > %s ORDER BY m.datarow_id LIMIT %s"
        )
        params = [slice.pk, *split_params, after, limit + 1]
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchall()
    page = keys[:limit]
    by_id = DataRow.objects.using(using).in_bulk([row_id for row_id, _ in page])
    # A row deleted since the key was read is gone from its slices too (a trigger deletes its memberships): drop it.
    results = [
        (by_id[row_id], None if split_value is None else Split(split_value).label)
        for row_id, split_value in page
        if row_id in by_id
    ]
    return SliceMemberPage(results, page[-1][0] if len(keys) > limit else None)


def slice_member_count(*, slice: Slice, split: str | None = None) -> int:
    """How many members the slice has (in one split, if given); a live slice's are counted now."""
    _check_split_filter(slice, split)
    if slice.kind != Slice.Kind.QUERY and split is None and slice.member_count is not None:
        return slice.member_count
    using = router.db_for_read(SliceMember)
    members = slice_members_sql(slice=slice, split=split, using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({members.sql}) AS members", members.params)
        return cursor.fetchone()[0]


def slice_split_counts(*, slice: Slice) -> dict[str, int]:
    """Members per split name, for a split slice; an empty dict when it was never split."""
    if slice.split_seed is None:
        return {}
    using = router.db_for_read(SliceMember)
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT split, count(*) FROM slices_slicemember WHERE slice_id = %s GROUP BY split", [slice.pk])
        counted = dict(cursor.fetchall())
    return {split.label: counted.get(split.value, 0) for split in Split}


def slice_stored_members_require(slice: Slice, *, project_id: int, field: str) -> None:
    """A 400 on `field` unless the slice is the project's and holds stored members (ids, or frozen and filled)."""
    if slice.project_id != project_id:
        raise ApplicationError(f"Slice {slice.pk} belongs to another project.", {"fields": {field: ["Not found."]}})
    if slice.kind == Slice.Kind.QUERY:
        raise ApplicationError(
            f"Slice '{slice.name}' is a live query; freeze it (or use an ids slice) here.",
            {"fields": {field: ["Needs stored members."]}},
        )
    if slice.kind == Slice.Kind.FROZEN and slice.frozen_at is None:
        raise Conflict(f"Slice '{slice.name}' is still being frozen; use it once its job has finished.")
