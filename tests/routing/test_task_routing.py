"""A task enqueued right after a write loads its rows from the writer; one enqueued without a write reads the replica.

A real Celery worker consumes from Redis, in a thread of this process so that the task can report back here.
"""

import queue

import pytest
from celery.contrib.testing.worker import start_worker
from django.db.models.expressions import RawSQL

from mlops import db_routing
from mlops.celery import app
from projects.models import Project
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import project_make

QUEUE = "routing-tests"
answers: queue.Queue = queue.Queue()


@app.task(name="tests.routing.report_project_server", ignore_result=True)
def report_project_server(project_id: int) -> None:
    """Reports whether the server that answered has the row and is the replica (None: the row is not there)."""
    answers.put(
        Project.objects.filter(pk=project_id)
        .annotate(in_recovery=RawSQL("pg_is_in_recovery()", ()))
        .values_list("in_recovery", flat=True)
        .first()
    )


@pytest.fixture(scope="module")
def worker(replica_pair):
    # Messages an interrupted earlier run left behind would answer before this run's.
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[QUEUE], shutdown_timeout=20):
        yield


def test_a_task_enqueued_after_a_write_reads_it_from_the_writer(worker, replica_pair):
    with db_routing.reader_allowed(), tenant_scope(TENANT_A):
        project = project_make(name="Enqueued after write")
        report_project_server.apply_async([project.pk], queue=QUEUE)
    assert answers.get(timeout=20) is False


def test_a_task_enqueued_without_a_write_reads_the_replica(worker, replica_pair):
    with tenant_scope(TENANT_A):
        project = project_make(name="Seeded")
    replica_pair.wait_for_replay()
    with db_routing.reader_allowed(), tenant_scope(TENANT_A):
        report_project_server.apply_async([project.pk], queue=QUEUE)
    assert answers.get(timeout=20) is True


def test_a_task_enqueued_long_after_the_write_reads_the_replica(worker, replica_pair, settings):
    settings.READ_YOUR_WRITES_SECONDS = 0
    with db_routing.reader_allowed(), tenant_scope(TENANT_A):
        project = project_make(name="Old write")
        replica_pair.wait_for_replay()
        report_project_server.apply_async([project.pk], queue=QUEUE)
    assert answers.get(timeout=20) is True
