"""Writes of slices: create (live, ids, frozen), combine, split, rename, delete.

Members are only ever written set-based, one `INSERT ... SELECT` or `UPDATE ... FROM` per operation whatever their
number; member_count is set from the insert's row count and taken down by a trigger when members are deleted
(slices/migrations/0002), so it stays exact when datarows go (members go with them: 0003).
"""

import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from jobs.models import Job
from jobs.services import job_create
from mlops import tables
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError, Conflict
from projects.models import Project
from search.engines.base import get_engine
from search.engines.postgres_compiler import compile_filter
from search.indexing import slice_members_changed
from search.ql.validation import ValidQuery
from search.queries import project_query_validate
from slices.models import Slice, Split
from slices.selectors import slice_members_sql
from tenancy.principal import Principal

# A freeze with more matches than this runs as a job; the request only counts that far to decide.
SLICE_FREEZE_JOB_KIND = "slice-freeze"
FREEZE_IN_REQUEST_MAX = 100_000
MAX_DATAROW_IDS = 100_000
UNKNOWN_IDS_SHOWN = 100
COMBINE_OPERATIONS = {"union": "UNION", "intersection": "INTERSECT", "difference": "EXCEPT"}
MAX_COMBINED_SLICES = 20


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A slice named '{name}' already exists in this project.",
        {"fields": {"name": ["This name is already taken in this project."]}},
    )


def _slice_insert(**fields: Any) -> Slice:
    try:
        with transaction.atomic(using=WRITER):
            return Slice.objects.using(WRITER).create(**fields)
    except IntegrityError as error:
        raise _name_taken(fields["name"]) from error


def _members_insert(*, project_id: int, slice_id: int, select_sql: str, params: list) -> int:
    """Add the distinct datarow ids `select_sql` selects (one column) as members; returns how many. No ON CONFLICT:
    its speculative insertion costs on every row, and every caller's statement yields each id once. The members'
    documents are indexed again once this commits (their `slice_ids`). Call inside a transaction: the insert runs
    after every datarow delete in flight has committed, and no new one starts before the transaction ends
    (slices/migrations/0005), so the insert never sees a datarow that is gone, and no delete misses a member."""
    with connections[WRITER].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '.slices_slicemember', 0))")
        cursor.execute(
            f"INSERT INTO slices_slicemember (slice_id, datarow_id) "
            f"SELECT %s, selected.id FROM ({select_sql}) AS selected(id)",
            [slice_id, *params],
        )
        inserted = cursor.rowcount
    slice_members_changed(project_id=project_id, slice_id=slice_id)
    return inserted


def _engine_matches_copied(*, slice: Slice, query: ValidQuery | None) -> str:
    """Stream the search engine's matching ids (search_after batches) into a temporary table with COPY; returns the
    SELECT of those whose datarows still exist (the index may lag a delete). Call inside a transaction."""
    with connections[WRITER].cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE frozen_matches (id bigint) ON COMMIT DROP")
        for batch in get_engine().iter_matching_ids(
            tenant_schema=connections[WRITER].schema_name,
            project_id=slice.project_id,
            query=query,
            dataset_id=slice.dataset_id,
            using=WRITER,
        ):
            # One COPY per batch: the engine may read the database between batches, which an open COPY would block.
            with cursor.copy("COPY frozen_matches (id) FROM STDIN") as copy:
                for datarow_id in batch:
                    copy.write_row((datarow_id,))
    return f"SELECT DISTINCT f.id FROM frozen_matches AS f JOIN {tables.DATAROW} AS d ON d.id = f.id"


def _stored_slice_create(
    *,
    project: Project,
    name: str,
    created_by: str,
    kind: str,
    select_sql: str,
    params: list,
    description: str = "",
    query: str = "",
    dataset_id: int | None = None,
) -> Slice:
    with transaction.atomic(using=WRITER):
        created = _slice_insert(
            project=project,
            name=name,
            description=description,
            kind=kind,
            query=query,
            dataset_id=dataset_id,
            created_by=created_by,
            member_count=0,
            frozen_at=timezone.now() if kind == Slice.Kind.FROZEN else None,
        )
        created.member_count = _members_insert(
            project_id=project.pk, slice_id=created.pk, select_sql=select_sql, params=params
        )
        created.save(update_fields=["member_count"])
    return created


def slice_create_from_select(
    *, project: Project, name: str, created_by: str, select_sql: str, params: list, description: str = ""
) -> Slice:
    """An ids slice of the datarow ids `select_sql` returns (one column of datarow ids of `project`), written with
    one `INSERT ... SELECT`. Ids of other projects' datarows are left out, so a wrong statement cannot leak them."""
    in_project = (
        f"SELECT DISTINCT selected.id FROM ({select_sql}) AS selected(id) "
        f"JOIN {tables.DATAROW} AS d ON d.id = selected.id "
        f"JOIN {tables.DATASET} AS s ON s.id = d.dataset_id WHERE s.project_id = %s"
    )
    return _stored_slice_create(
        project=project,
        name=name,
        created_by=created_by,
        kind=Slice.Kind.IDS,
        select_sql=in_project,
        params=[*params, project.pk],
        description=description,
    )


def slice_create_from_ids(
    *, project: Project, name: str, created_by: str, datarow_ids: list[int], description: str = ""
) -> Slice:
    """An ids slice of the given datarows, all of which must be the project's (a 400 names those that are not)."""
    if not datarow_ids:
        raise ApplicationError("Give at least one datarow id.", {"fields": {"datarow_ids": ["Empty."]}})
    if len(datarow_ids) > MAX_DATAROW_IDS:
        raise ApplicationError(
            f"At most {MAX_DATAROW_IDS} datarow ids per slice; use a query for more.",
            {"fields": {"datarow_ids": [f"{len(datarow_ids)} ids given."]}},
        )
    with connections[WRITER].cursor() as cursor:
        cursor.execute(
            f"""
            SELECT coalesce(array_agg(wanted.id ORDER BY wanted.id), '{{}}')
            FROM (SELECT DISTINCT unnest(%s::bigint[]) AS id) AS wanted
            WHERE NOT EXISTS (SELECT 1 FROM {tables.DATAROW} AS d JOIN {tables.DATASET} AS s ON s.id = d.dataset_id
                              WHERE d.id = wanted.id AND s.project_id = %s)""",
            [datarow_ids, project.pk],
        )
        (unknown,) = cursor.fetchone()
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:UNKNOWN_IDS_SHOWN])
        more = f" and {len(unknown) - UNKNOWN_IDS_SHOWN} more" if len(unknown) > UNKNOWN_IDS_SHOWN else ""
        raise ApplicationError(
            f"{len(unknown)} datarow ids are not datarows of project {project.pk}: {shown}{more}.",
            {
                "fields": {"datarow_ids": [f"Not datarows of this project: {shown}{more}."]},
                "unknown_ids": unknown[:UNKNOWN_IDS_SHOWN],
            },
        )
    return _stored_slice_create(
        project=project,
        name=name,
        created_by=created_by,
        kind=Slice.Kind.IDS,
        select_sql="SELECT DISTINCT unnest(%s::bigint[])",
        params=[datarow_ids],
        description=description,
    )


def slice_create_live(
    *, project: Project, name: str, created_by: str, query: str, dataset_id: int | None = None, description: str = ""
) -> Slice:
    """A live slice: its members are the query's matches whenever it is read. The query is checked now."""
    project_query_validate(project_id=project.pk, query_text=query, using=WRITER)
    return _slice_insert(
        project=project,
        name=name,
        description=description,
        kind=Slice.Kind.QUERY,
        query=query,
        dataset_id=dataset_id,
        created_by=created_by,
    )


@dataclass(frozen=True)
class SliceFreezeResult:
    slice: Slice
    job: Job | None  # the job filling a large freeze; None when it was frozen in the request


def slice_freeze_start(
    *,
    principal: Principal,
    project: Project,
    name: str,
    query: str,
    dataset_id: int | None = None,
    description: str = "",
) -> SliceFreezeResult:
    """A frozen slice of the query's current matches: frozen now when they are at most FREEZE_IN_REQUEST_MAX,
    otherwise by a job (the slice exists at once, with frozen_at null until the job has filled it)."""
    valid = project_query_validate(project_id=project.pk, query_text=query, using=WRITER)
    condition = compile_filter(valid, project_id=project.pk, dataset_id=dataset_id)
    with connections[WRITER].cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {tables.DATAROW} AS d WHERE {condition.sql} LIMIT %s) AS capped",
            [*condition.params, FREEZE_IN_REQUEST_MAX + 1],
        )
        (matches,) = cursor.fetchone()
    with transaction.atomic(using=WRITER):
        created = _slice_insert(
            project=project,
            name=name,
            description=description,
            kind=Slice.Kind.FROZEN,
            query=query,
            dataset_id=dataset_id,
            created_by=principal.user_id,
        )
        if matches <= FREEZE_IN_REQUEST_MAX:
            return SliceFreezeResult(slice_freeze_members(slice=created), None)
        job = job_create(principal=principal, kind=SLICE_FREEZE_JOB_KIND, params={"slice_id": created.pk})
        created.freeze_job = job
        created.save(update_fields=["freeze_job"])
    return SliceFreezeResult(created, job)


def slice_freeze_members(*, slice: Slice) -> Slice:
    """Fill a frozen slice with its query's matches as of now, set-based: on PostgreSQL one `INSERT ... SELECT` from
    the compiled query; on Elasticsearch the engine's ids stream into a COPY, then one `INSERT ... SELECT`."""
    valid = project_query_validate(project_id=slice.project_id, query_text=slice.query, using=WRITER)
    with transaction.atomic(using=WRITER):
        if settings.SEARCH_ENGINE == "elasticsearch":
            select_sql, params = _engine_matches_copied(slice=slice, query=valid), []
        else:
            condition = compile_filter(valid, project_id=slice.project_id, dataset_id=slice.dataset_id)
            select_sql, params = f"SELECT d.id FROM {tables.DATAROW} AS d WHERE {condition.sql}", condition.params
        slice.member_count = _members_insert(
            project_id=slice.project_id, slice_id=slice.pk, select_sql=select_sql, params=params
        )
        slice.frozen_at = timezone.now()
        slice.save(update_fields=["member_count", "frozen_at", "updated_at"])
    return slice


def slice_combine(
    *, project: Project, name: str, created_by: str, operation: str, slices: list[Slice], description: str = ""
) -> Slice:
    """A frozen slice of the slices' members combined left to right: union (in any), intersection (in all),
    difference (in the first and in none of the others). Live slices take part with their current matches."""
    if operation not in COMBINE_OPERATIONS:
        raise ApplicationError(
            f"Unknown operation {operation!r}: use {', '.join(COMBINE_OPERATIONS)}.",
            {"fields": {"operation": [f"One of {', '.join(COMBINE_OPERATIONS)}."]}},
        )
    if not 2 <= len(slices) <= MAX_COMBINED_SLICES:
        raise ApplicationError(
            f"Combine from 2 to {MAX_COMBINED_SLICES} slices.", {"fields": {"slices": [f"{len(slices)} given."]}}
        )
    parts = [slice_members_sql(slice=part, using=WRITER) for part in slices]
    # Each part in parentheses: the set operators then apply strictly left to right, as documented; without ALL
    # they yield each id once.
    select_sql = f" {COMBINE_OPERATIONS[operation]} ".join(f"({part.sql})" for part in parts)
    params = [param for part in parts for param in part.params]
    combined_from = ", ".join(f"'{part.name}'" for part in slices)
    return _stored_slice_create(
        project=project,
        name=name,
        created_by=created_by,
        kind=Slice.Kind.FROZEN,
        select_sql=select_sql,
        params=params,
        description=description or f"{operation} of {combined_from}",
    )


def _fractions_checked(fractions: dict) -> dict[str, float]:
    names = [split.label for split in Split]
    unknown = sorted(set(fractions) - set(names))
    if unknown:
        raise ApplicationError(
            f"Unknown splits {unknown}: fractions are given for {', '.join(names)}.",
            {"fields": {"fractions": [f"Unknown: {', '.join(unknown)}."]}},
        )
    checked = {name: fractions.get(name, 0) for name in names}
    for name, value in checked.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 <= value <= 1
            or not math.isfinite(value)
        ):
            raise ApplicationError(
                f"The {name} fraction must be a number from 0 to 1, not {value!r}.",
                {"fields": {"fractions": [f"{name}: not a number from 0 to 1."]}},
            )
    if not math.isclose(sum(checked.values()), 1, abs_tol=1e-9):
        raise ApplicationError(
            f"The fractions must add up to 1, not {sum(checked.values())}.",
            {"fields": {"fractions": ["They must add up to 1."]}},
        )
    return {name: float(value) for name, value in checked.items()}


def slice_split(*, slice: Slice, seed: int, fractions: dict, stratified: bool = False) -> Slice:
    """Assign every member to train / validation / test, in SQL, the same way for the same seed and members.

    Members are ordered by a 64-bit hash of (datarow id, seed) within their stratum (one stratum, or one per class
    when stratified), and cut at round(n * train) and round(n * (train + validation)) of each stratum's n.
    A member's class is that of its classification labels; a member with none forms the "unlabelled" stratum and
    one whose classification labels name several classes the "several classes" stratum (docs: slices).
    """
    if slice.kind == Slice.Kind.QUERY:
        raise ApplicationError(
            f"Slice '{slice.name}' is live: freeze it before splitting it.",
            {"fields": {"slice": ["Live slices cannot be split."]}},
        )
    if slice.kind == Slice.Kind.FROZEN and slice.frozen_at is None:
        raise Conflict(f"Slice '{slice.name}' is still being frozen; split it once its job has finished.")
    checked = _fractions_checked(fractions)
    train, validation = checked["train"], checked["validation"]
    stratum = "coalesce(strata.stratum, -1)" if stratified else "0"
    strata = (
        f"""
        LEFT JOIN (SELECT l.datarow_id,
                          CASE WHEN count(DISTINCT l.ontology_class_id) = 1 THEN min(l.ontology_class_id) ELSE -2 END
                              AS stratum
                   FROM {tables.LABEL} AS l JOIN slices_slicemember AS lm ON lm.datarow_id = l.datarow_id
                   WHERE lm.slice_id = %(slice)s AND l.kind = 'classification' GROUP BY l.datarow_id) AS strata
            ON strata.datarow_id = m.datarow_id"""
        if stratified
        else ""
    )
    with transaction.atomic(using=WRITER), connections[WRITER].cursor() as cursor:
        cursor.execute(
            f"""
            WITH ranked AS (
                SELECT m.datarow_id,
                       row_number() OVER (PARTITION BY {stratum}
                                          ORDER BY hashint8extended(m.datarow_id, %(seed)s), m.datarow_id) AS position,
                       count(*) OVER (PARTITION BY {stratum}) AS size
                FROM slices_slicemember AS m {strata}
                WHERE m.slice_id = %(slice)s)
            UPDATE slices_slicemember AS m
            SET split = CASE WHEN ranked.position <= round(ranked.size * %(train)s) THEN %(to_train)s
                             WHEN ranked.position <= round(ranked.size * %(train_validation)s) THEN %(to_validation)s
                             ELSE %(to_test)s END
            FROM ranked WHERE m.slice_id = %(slice)s AND m.datarow_id = ranked.datarow_id""",
            {
                "slice": slice.pk,
                "seed": seed,
                "train": train,
                "train_validation": train + validation,
                "to_train": Split.TRAIN.value,
                "to_validation": Split.VALIDATION.value,
                "to_test": Split.TEST.value,
            },
        )
        slice.split_seed, slice.split_fractions, slice.split_stratified = seed, checked, stratified
        slice.save(update_fields=["split_seed", "split_fractions", "split_stratified", "updated_at"])
    return slice


def slice_update(*, slice: Slice, name: str | None = None, description: str | None = None) -> Slice:
    """Rename or re-describe a slice. Live slices naming it by its old name no longer find it (a 400 when read)."""
    if name is not None:
        slice.name = name
    if description is not None:
        slice.description = description
    try:
        with transaction.atomic(using=WRITER):
            slice.save(update_fields=["name", "description", "updated_at"])
    except IntegrityError as error:
        raise _name_taken(slice.name) from error
    return slice


def slice_delete(*, slice: Slice) -> None:
    """Delete the slice; its member rows go with it in the same statement (a trigger of slices/migrations/0003),
    not through the ORM's collector."""
    with connections[WRITER].cursor() as cursor:
        cursor.execute("DELETE FROM slices_slice WHERE id = %s", [slice.pk])
