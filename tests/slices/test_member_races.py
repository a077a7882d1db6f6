"""Member inserts and datarow deletes racing in committed transactions: members have no foreign key, so these
check that neither order leaves a member whose datarow is gone (slices/migrations/0005)."""

import threading
import time

import pytest
from django.db import connections, transaction

from tests.conftest import TENANT_A
from tests.factories import datarows_make, dataset_make, principal_make, project_make

pytestmark = pytest.mark.usefixtures("committed_tenants")


@pytest.fixture
def rows():
    """A committed project with one dataset of 6 datarows tagged `keep`; removed afterwards."""
    from datasets.services.datasets import dataset_delete_rows
    from projects.services import project_delete
    from tenancy.context import tenant_scope

    with tenant_scope(TENANT_A):
        project = project_make()
        dataset = dataset_make(project=project)
        created = datarows_make(dataset=dataset, count=6, tags=["keep"])
    yield project, dataset, [row.pk for row in created]
    with tenant_scope(TENANT_A):
        dataset_delete_rows(dataset_id=dataset.pk, progress=lambda deleted: None)
        project_delete(project=project)


class _HeldTransaction(threading.Thread):
    """Runs `work()` in a transaction of its own in tenant A and keeps it open until release() (or the test's
    end); raises what `work` raised on join_checked()."""

    def __init__(self, work):
        super().__init__()
        self.work, self.done, self.error = work, threading.Event(), None
        self._release = threading.Event()

    def run(self):
        from tenancy.context import tenant_scope

        try:
            with tenant_scope(TENANT_A), transaction.atomic():
                self.work()
                self.done.set()
                self._release.wait(30)
        except BaseException as error:  # noqa: BLE001 - raised in the test's thread by join_checked
            self.error = error
        finally:
            self.done.set()
            connections.close_all()

    def release(self):
        self._release.set()

    def join_checked(self):
        self.release()
        self.join(30)
        if self.error is not None:
            raise self.error


def _second_waits_for_first(first, second) -> bool:
    """Run `first` in a transaction held open, then `second` in another; whether `second` waited on the advisory
    lock before `first` committed. Both have committed on return."""
    held = _HeldTransaction(first)
    held.start()
    assert held.done.wait(10)
    waiting = _HeldTransaction(second)
    waiting.start()
    try:
        return _a_session_waits_on_an_advisory_lock()
    finally:
        held.join_checked()
        waiting.join_checked()


def _a_session_waits_on_an_advisory_lock(timeout: float = 5.0) -> bool:
    with connections["default"].cursor() as cursor:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


def _members(slice_id: int) -> list[int]:
    from slices.models import SliceMember
    from tenancy.context import tenant_scope

    with tenant_scope(TENANT_A):
        return sorted(SliceMember.objects.filter(slice_id=slice_id).values_list("datarow_id", flat=True))


def test_a_freeze_waits_for_a_datarow_delete_in_flight_and_leaves_out_its_row(rows):
    from datasets.services.datarows import datarow_bulk_delete
    from slices.services import slice_freeze_start

    project, dataset, ids = rows
    principal = principal_make(tenant=TENANT_A)
    frozen = {}
    # given: a delete of one row, not committed yet
    # when: a freeze of every row starts meanwhile; it waits for the delete, which then commits
    waited = _second_waits_for_first(
        lambda: datarow_bulk_delete(dataset=dataset, datarow_ids=[ids[0]]),
        lambda: frozen.update(
            result=slice_freeze_start(principal=principal, project=project, name="kept", query="tags = 'keep'")
        ),
    )
    # then
    assert _members(frozen["result"].slice.pk) == ids[1:] and frozen["result"].slice.member_count == 5
    assert waited


def test_a_datarow_delete_waits_for_a_member_insert_in_flight_and_takes_its_member(rows):
    from datasets.services.datarows import datarow_bulk_delete
    from slices.models import Slice
    from slices.services import slice_create_from_ids
    from tenancy.context import tenant_scope

    project, dataset, ids = rows
    created = {}
    # given: an ids slice of every row, not committed yet
    # when: a delete of one row starts meanwhile; it waits for the insert, which then commits
    waited = _second_waits_for_first(
        lambda: created.update(
            slice=slice_create_from_ids(project=project, name="picked", created_by="t", datarow_ids=ids)
        ),
        lambda: datarow_bulk_delete(dataset=dataset, datarow_ids=[ids[0]]),
    )
    # then: the delete took the member with its row, and the count with it
    assert _members(created["slice"].pk) == ids[1:]
    with tenant_scope(TENANT_A):
        assert Slice.objects.get(pk=created["slice"].pk).member_count == 5
    assert waited
