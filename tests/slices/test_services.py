"""Slice services: creation of every kind, combination algebra, splits, and memberships following datarow deletes."""

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.exceptions import ApplicationError, Conflict
from search.queries import InvalidQuery
from slices.models import Slice, SliceMember
from slices.selectors import slice_member_count, slice_member_page, slice_members_sql, slice_split_counts
from slices.services import (
    slice_combine,
    slice_create_from_ids,
    slice_create_from_select,
    slice_create_live,
    slice_delete,
    slice_freeze_start,
    slice_split,
    slice_update,
)
from tests.factories import project_make, slice_make

pytestmark = pytest.mark.django_db


def members(slice_: Slice) -> list[int]:
    return sorted(SliceMember.objects.filter(slice=slice_).values_list("datarow_id", flat=True))


def all_member_ids(slice_: Slice, **filters) -> list[int]:
    """Every member by walking the keyset pages, three at a time."""
    seen, after = [], None
    while True:
        page = slice_member_page(slice=slice_, after_id=after, limit=3, **filters)
        seen += [row.pk for row, _ in page.results]
        if page.next_after_id is None:
            return seen
        after = page.next_after_id


def test_create_from_select_writes_the_selected_ids_of_the_project_only(project, make_rows):
    ids = make_rows(6)
    other = project_make(name="other")
    created = slice_create_from_select(
        project=other,
        name="leak",
        created_by="t",
        select_sql="SELECT id FROM datasets_datarow WHERE id = ANY(%s)",
        params=[ids],
    )
    assert (created.kind, created.member_count, members(created)) == ("ids", 0, [])

    # repeats in the statement's output count once
    mine = slice_create_from_select(
        project=project,
        name="mine",
        created_by="t",
        description="d",
        select_sql="SELECT unnest(%s::bigint[])",
        params=[ids[:3] + ids[:2]],
    )
    assert (mine.member_count, members(mine), mine.description) == (3, ids[:3], "d")


def test_ids_slice_names_the_ids_that_are_not_the_projects(project, make_rows):
    ids = make_rows(4)
    created = slice_create_from_ids(project=project, name="picked", created_by="t", datarow_ids=[ids[3], ids[0]])
    assert (created.member_count, members(created)) == (2, [ids[0], ids[3]])
    missing = max(ids) + 1000
    with pytest.raises(ApplicationError) as raised:
        slice_create_from_ids(project=project, name="bad", created_by="t", datarow_ids=[ids[1], missing, missing + 1])
    assert raised.value.extra["unknown_ids"] == [missing, missing + 1]
    assert str(missing) in raised.value.message and "datarow_ids" in raised.value.extra["fields"]
    assert not Slice.objects.filter(name="bad").exists()


def test_names_are_unique_in_a_project(project, make_rows):
    make_rows(2)
    slice_create_live(project=project, name="same", created_by="t", query="")
    with pytest.raises(Conflict):
        slice_create_live(project=project, name="same", created_by="t", query="")
    other = slice_create_live(project=project, name="other", created_by="t", query="")
    with pytest.raises(Conflict):
        slice_update(slice=other, name="same")


def test_live_slice_follows_the_data_and_a_frozen_one_does_not(project, make_rows, catalog, principal):
    ids = make_rows(6)
    live = slice_create_live(project=project, name="even", created_by="t", query="metadata.parity = 'even'")
    frozen = slice_freeze_start(principal=principal, project=project, name="even now", query="metadata.parity = 'even'")
    assert frozen.job is None and frozen.slice.frozen_at is not None
    assert all_member_ids(live) == members(frozen.slice) == ids[0::2]

    more = make_rows(4)
    assert all_member_ids(live) == ids[0::2] + more[0::2]
    assert slice_member_count(slice=live) == 5
    assert slice_member_count(slice=frozen.slice) == 3 and all_member_ids(frozen.slice) == ids[0::2]


def test_live_and_frozen_slices_can_be_limited_to_a_dataset(project, make_rows, principal):
    make_rows(3, dataset="a")
    in_b = make_rows(2, dataset="b")
    dataset_b = make_rows.datasets["b"].pk
    live = slice_create_live(project=project, name="b", created_by="t", query="", dataset_id=dataset_b)
    frozen = slice_freeze_start(principal=principal, project=project, name="b now", query="", dataset_id=dataset_b)
    assert all_member_ids(live) == members(frozen.slice) == in_b


def test_bad_queries_are_refused_before_a_slice_is_made(project, make_rows, principal):
    make_rows(1)
    with pytest.raises(InvalidQuery, match="unknown field"):
        slice_create_live(project=project, name="x", created_by="t", query="metadata.nope = 1")
    with pytest.raises(InvalidQuery, match="unknown slice 'nope'"):
        slice_freeze_start(principal=principal, project=project, name="y", query="IN SLICE 'nope'")
    assert not Slice.objects.filter(project=project).exists()


def test_a_large_freeze_runs_as_a_job(
    project, make_rows, principal, celery_eager, monkeypatch, django_capture_on_commit_callbacks
):
    from jobs.models import Job

    monkeypatch.setattr("slices.services.FREEZE_IN_REQUEST_MAX", 3)
    ids = make_rows(5)
    with django_capture_on_commit_callbacks(execute=True):
        started = slice_freeze_start(principal=principal, project=project, name="big", query="")
    assert started.job is not None and started.slice.frozen_at is None
    job = Job.objects.get(pk=started.job.pk)
    frozen = Slice.objects.get(pk=started.slice.pk)
    assert (job.kind, job.status, job.counters["members"]) == ("slice-freeze", "succeeded", 5)
    assert (frozen.member_count, frozen.freeze_job_id, members(frozen)) == (5, job.pk, ids)
    assert frozen.frozen_at is not None


def test_members_page_by_id_and_filter_by_split(project, make_rows):
    ids = make_rows(10)
    picked = slice_create_from_ids(project=project, name="p", created_by="t", datarow_ids=ids)
    assert all_member_ids(picked) == ids
    slice_split(slice=picked, seed=1, fractions={"train": 0.6, "validation": 0.2, "test": 0.2})
    by_split = {name: all_member_ids(picked, split=name) for name in ("train", "validation", "test")}
    assert sorted(sum(by_split.values(), [])) == ids
    assert {name: len(rows) for name, rows in by_split.items()} == {"train": 6, "validation": 2, "test": 2}
    assert slice_member_count(slice=picked, split="validation") == 2
    assert all(split == "test" for _, split in slice_member_page(slice=picked, split="test").results)


def test_combinations_are_the_set_algebra(project, make_rows, catalog):
    """Left to right over the operands, like Python's sets; a live slice takes part with its current matches."""
    from django.db import transaction

    ids = make_rows(20)  # metadata.i of ids[i] is i

    @settings(
        max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(
        operands=st.lists(st.sets(st.integers(0, 19)), min_size=2, max_size=4),
        operation=st.sampled_from(["union", "intersection", "difference"]),
        live_first=st.booleans(),
    )
    def check(operands, operation, live_first):
        with transaction.atomic():
            parts = []
            for number, chosen in enumerate(operands):
                if number == 0 and live_first:
                    values = ", ".join(str(i) for i in sorted(chosen)) or "-1"
                    parts.append(
                        slice_create_live(
                            project=project, name=f"part {number}", created_by="t", query=f"metadata.i IN ({values})"
                        )
                    )
                else:
                    parts.append(
                        slice_create_from_select(
                            project=project,
                            name=f"part {number}",
                            created_by="t",
                            select_sql="SELECT unnest(%s::bigint[])",
                            params=[[ids[i] for i in chosen]],
                        )
                    )
            combined = slice_combine(
                project=project, name="combined", created_by="t", operation=operation, slices=parts
            )
            expected = set(operands[0])
            for chosen in operands[1:]:
                expected = {
                    "union": expected | chosen,
                    "intersection": expected & chosen,
                    "difference": expected - chosen,
                }[operation]
            assert combined.kind == "frozen" and combined.member_count == len(expected)
            assert members(combined) == sorted(ids[i] for i in expected)
            transaction.set_rollback(True)

    check()


def test_combining_checks_its_operation_and_operands(project, make_rows):
    ids = make_rows(2)
    one = slice_create_from_ids(project=project, name="one", created_by="t", datarow_ids=ids)
    with pytest.raises(ApplicationError, match="Unknown operation"):
        slice_combine(project=project, name="c", created_by="t", operation="xor", slices=[one, one])
    with pytest.raises(ApplicationError, match="from 2 to"):
        slice_combine(project=project, name="c", created_by="t", operation="union", slices=[one])


def _labelled_rows(project, make_rows, classes: list[str | tuple[str, ...]]) -> list[int]:
    """One datarow per entry, with one classification label per class named (a tuple: several labels)."""
    from datasets.models import Label, OntologyClass

    ids = make_rows(len(classes))
    known = {}
    labels = []
    for datarow_id, names in zip(ids, classes, strict=True):
        for name in (names,) if isinstance(names, str) else names:
            if name not in known:
                known[name] = OntologyClass.objects.create(project=project, name=name)
            labels.append(
                Label(
                    datarow_id=datarow_id, ontology_class=known[name], kind="classification", source="t", updated_by="t"
                )
            )
    Label.objects.bulk_create(labels)
    return ids


def test_split_is_deterministic_for_a_seed_and_follows_the_fractions(project, make_rows):
    ids = make_rows(1000)
    picked = slice_create_from_ids(project=project, name="p", created_by="t", datarow_ids=ids)

    def assignment(seed: int) -> dict[int, int]:
        slice_split(slice=picked, seed=seed, fractions={"train": 0.7, "validation": 0.2, "test": 0.1})
        return dict(SliceMember.objects.filter(slice=picked).values_list("datarow_id", "split"))

    first = assignment(42)
    assert assignment(7) != first
    assert assignment(42) == first
    assert slice_split_counts(slice=picked) == {"train": 700, "validation": 200, "test": 100}
    picked.refresh_from_db()
    assert (picked.split_seed, picked.split_fractions, picked.split_stratified) == (
        42,
        {"train": 0.7, "validation": 0.2, "test": 0.1},
        False,
    )
    # the split does not follow id order: each split takes rows from all over
    validation = sorted(row for row, split in first.items() if split == 1)
    assert validation[0] < ids[100] and validation[-1] > ids[900]


def test_a_copy_of_the_members_gets_the_same_split(project, make_rows):
    """The split depends on the seed and the members only, not on the slice or the order they were added in."""
    ids = make_rows(50)
    one = slice_create_from_ids(project=project, name="one", created_by="t", datarow_ids=ids)
    two = slice_create_from_ids(project=project, name="two", created_by="t", datarow_ids=list(reversed(ids)))
    fractions = {"train": 0.5, "validation": 0.25, "test": 0.25}
    for each in (one, two):
        slice_split(slice=each, seed=3, fractions=fractions)
    assert dict(SliceMember.objects.filter(slice=one).values_list("datarow_id", "split")) == dict(
        SliceMember.objects.filter(slice=two).values_list("datarow_id", "split")
    )


def test_stratified_split_keeps_each_class_share_in_every_split(project, make_rows):
    rng = random.Random(1)
    classes = ["cat"] * 60 + ["dog"] * 30 + ["bird"] * 10 + [None] * 20 + [("cat", "dog")] * 10
    rng.shuffle(classes)
    ids = _labelled_rows(project, make_rows, [c or () for c in classes])
    picked = slice_create_from_ids(project=project, name="p", created_by="t", datarow_ids=ids)
    slice_split(slice=picked, seed=9, fractions={"train": 0.8, "validation": 0.1, "test": 0.1}, stratified=True)
    splits = dict(SliceMember.objects.filter(slice=picked).values_list("datarow_id", "split"))
    stratum = {row: ("several" if isinstance(c, tuple) else c or "none") for row, c in zip(ids, classes, strict=True)}
    counted = Counter((stratum[row], split) for row, split in splits.items())
    # per stratum of n: round(0.8 n) train, round(0.9 n) - round(0.8 n) validation, the rest test
    expected = {"cat": (48, 6, 6), "dog": (24, 3, 3), "bird": (8, 1, 1), "none": (16, 2, 2), "several": (8, 1, 1)}
    assert {name: tuple(counted[(name, split)] for split in (0, 1, 2)) for name in expected} == expected


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"train": 0.8, "validation": 0.1}, "add up to 1"),
        ({"train": 1.2, "validation": -0.2, "test": 0}, "from 0 to 1"),
        ({"train": 0.5, "holdout": 0.5}, "Unknown splits"),
        ({"train": "half", "test": 0.5}, "from 0 to 1"),
    ],
)
def test_split_fractions_are_checked(project, make_rows, fractions, message):
    picked = slice_create_from_ids(project=project, name="p", created_by="t", datarow_ids=make_rows(3))
    with pytest.raises(ApplicationError, match=message):
        slice_split(slice=picked, seed=1, fractions=fractions)


def test_live_slices_cannot_be_split(project, make_rows):
    make_rows(2)
    live = slice_create_live(project=project, name="l", created_by="t", query="")
    with pytest.raises(ApplicationError, match="freeze it"):
        slice_split(slice=live, seed=1, fractions={"train": 1})


def test_bulk_datarow_delete_removes_memberships_and_keeps_counts(project, make_rows):
    from datasets.services.datarows import datarow_bulk_delete

    ids = make_rows(6)
    one = slice_create_from_ids(project=project, name="one", created_by="t", datarow_ids=ids[:4])
    two = slice_create_from_ids(project=project, name="two", created_by="t", datarow_ids=ids[2:])
    result = datarow_bulk_delete(dataset=make_rows.datasets["main"], datarow_ids=[ids[1], ids[2], ids[5]])
    assert result.datarows == 3
    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.member_count, members(one)) == (2, [ids[0], ids[3]])
    assert (two.member_count, members(two)) == (2, [ids[3], ids[4]])


def test_dataset_delete_removes_memberships_and_the_slices_limited_to_it(project, make_rows, principal):
    from datasets.services.datasets import dataset_delete_rows

    kept = make_rows(3, dataset="kept")
    doomed = make_rows(4, dataset="doomed")
    mixed = slice_create_from_ids(project=project, name="mixed", created_by="t", datarow_ids=kept + doomed)
    limited = slice_freeze_start(
        principal=principal, project=project, name="doomed only", query="", dataset_id=make_rows.datasets["doomed"].pk
    ).slice
    dataset_delete_rows(dataset_id=make_rows.datasets["doomed"].pk, progress=lambda deleted: None)
    mixed.refresh_from_db()
    assert (mixed.member_count, members(mixed)) == (3, kept)
    assert not Slice.objects.filter(pk=limited.pk).exists()


def test_delete_removes_the_slice_and_its_members(project, make_rows):
    ids = make_rows(3)
    doomed = slice_create_from_ids(project=project, name="doomed", created_by="t", datarow_ids=ids)
    kept = slice_create_from_ids(project=project, name="kept", created_by="t", datarow_ids=ids)
    slice_delete(slice=doomed)
    assert not SliceMember.objects.filter(slice_id=doomed.pk).exists()
    kept.refresh_from_db()
    assert (kept.member_count, members(kept)) == (3, ids)


def test_members_sql_selects_the_members_of_every_kind(project, make_rows, catalog):
    from django.db import connection

    ids = make_rows(4)
    live = slice_create_live(project=project, name="odd", created_by="t", query="metadata.parity = 'odd'")
    picked = slice_create_from_ids(project=project, name="p", created_by="t", datarow_ids=ids[:2])
    for each, expected in ((live, ids[1::2]), (picked, ids[:2])):
        statement = slice_members_sql(slice=each)
        with connection.cursor() as cursor:
            cursor.execute(statement.sql, statement.params)
            assert sorted(row for (row,) in cursor.fetchall()) == expected


def test_a_failed_freeze_leaves_no_slice_behind(
    project, make_rows, principal, celery_eager, django_capture_on_commit_callbacks
):
    """A frozen slice whose query no longer holds when the job runs (here: a field no catalog knows)."""
    from jobs.models import Job
    from jobs.services import job_create
    from slices.models import Slice
    from slices.services import SLICE_FREEZE_JOB_KIND

    make_rows(3)
    doomed = slice_make(project=project, name="doomed", kind=Slice.Kind.FROZEN, query="metadata.gone = 1")
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(principal=principal, kind=SLICE_FREEZE_JOB_KIND, params={"slice_id": doomed.pk})
    job = Job.objects.get(pk=job.pk)
    assert job.status == "failed" and "unknown field 'metadata.gone'" in job.error
    assert not Slice.objects.filter(pk=doomed.pk).exists()


def test_a_freeze_cancelled_while_it_ran_leaves_no_slice_behind(
    project, make_rows, principal, celery_eager, monkeypatch, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from jobs.models import Job
    from slices.models import Slice, SliceMember
    from slices.services import slice_freeze_start

    monkeypatch.setattr("slices.services.FREEZE_IN_REQUEST_MAX", 1)
    make_rows(3)
    with django_capture_on_commit_callbacks() as queued:
        started = slice_freeze_start(principal=principal, project=project, name="cancelled", query="")
    # the cancel request lands on the row while the job's INSERT runs (set here before it starts)
    Job.objects.filter(pk=started.job.pk).update(cancel_requested_at=timezone.now())
    for send in queued:
        send()
    assert Job.objects.get(pk=started.job.pk).status == "cancelled"
    assert not Slice.objects.filter(pk=started.slice.pk).exists()
    assert not SliceMember.objects.filter(slice_id=started.slice.pk).exists()


def test_a_project_without_datasets_is_deleted_with_its_slices(project):
    from projects.services import project_delete

    live = slice_create_live(project=project, name="all", created_by="t", query="")
    project_delete(project=project)
    assert not Slice.objects.filter(pk=live.pk).exists()
