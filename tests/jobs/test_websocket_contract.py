"""The published websocket schema matches what the server sends, and refuses what it must not."""

import pytest

from jobs.serializers import JobOutputSerializer
from tests.websocket_contract import SCHEMA, job_message


def test_the_schema_names_every_field_of_the_job_as_rest_shows_it():
    assert set(SCHEMA["$defs"]["job"]["properties"]) == set(JobOutputSerializer().fields)


@pytest.mark.parametrize("bad", [
    '{"event": "progress", "job": {}}',
    '{"event": "snapshot"}',
    '{"event": "update", "job": {"id": "not-a-uuid"}}',
])
def test_a_message_outside_the_schema_fails_the_test_that_reads_it(bad):
    with pytest.raises(AssertionError, match="breaks job-message.json"):
        job_message(bad)
