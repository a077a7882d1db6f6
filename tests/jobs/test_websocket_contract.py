"""The published websocket schema matches what the server sends, and refuses what it must not."""

import pytest

from jobs.serializers import JobOutputSerializer
from tests.websocket_contract import SCHEMA, job_message


def test_the_schema_names_every_field_of_the_job_as_rest_shows_it():
    assert set(SCHEMA["$defs"]["job"]["properties"]) == set(JobOutputSerializer().fields)


@pytest.mark.parametrize(
    "bad",
    [
        '{"event": "progress", "job": {}}',
        '{"event": "snapshot"}',
        '{"event": "update", "job": {"id": "not-a-uuid"}}',
    ],
)
def test_a_message_outside_the_schema_fails_the_test_that_reads_it(bad):
    with pytest.raises(AssertionError, match="breaks job-message.json"):
        job_message(bad)


@pytest.mark.django_db
def test_the_job_state_is_what_the_serializers_fields_write(in_tenant_a, principal):
    from rest_framework import serializers

    from jobs.services import job_create, job_report_progress, job_request_cancel, job_start
    from jobs.state import job_state
    from jobs.tasks import COUNT_JOB_KIND

    # given a job with every kind of value: dates set and unset, a total, counters, params
    job = job_create(principal=principal, kind=COUNT_JOB_KIND, params={"steps": 3, "delay_seconds": 0})
    job = job_report_progress(job=job_start(job_id=job.pk), done=1, total=3, counters={"counted": 1}, message="1")
    job = job_request_cancel(job=job)
    # when its state is built, and its declared fields write it the way DRF does
    by_fields = serializers.Serializer.to_representation(JobOutputSerializer(), job)
    # then they agree: REST and websocket messages show the job alike, as the schema says
    assert job.cancel_requested_at and job.finished_at is None
    assert job_state(job) == by_fields
