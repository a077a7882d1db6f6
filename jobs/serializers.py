"""How a job looks to clients: the same shape over REST and in websocket events, so both mirror the row."""

from rest_framework import serializers

from jobs.models import Job
from jobs.state import job_state


class JobProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(source="progress_done")
    total = serializers.IntegerField(source="progress_total", allow_null=True)


# The fields are the schema; the data is jobs.state.job_state, which the websocket messages carry too (a comment, not
# a docstring, so the schema's Job component keeps no description).
class JobOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(
        choices=Job.Status.choices, help_text="queued → running → succeeded, failed or cancelled (final)."
    )
    cancel_requested_at = serializers.DateTimeField(allow_null=True)
    progress = JobProgressSerializer(source="*")
    counters = serializers.JSONField(
        help_text=(
            "Per kind. An import: lines, inserted, updated, skipped (existing rows left as they were), labels, "
            "predictions, errors, error_lines (lines left out for errors), partial (true when some lines were left out: "
            "succeeded, but not with every line), committed_rows, first_errors. An import whose every line failed ends "
            "failed, with the summary in error."
        )
    )
    message = serializers.CharField()
    error = serializers.CharField()
    params = serializers.JSONField()
    workspace_id = serializers.CharField()
    owner_id = serializers.CharField()
    celery_task_id = serializers.CharField()
    revision = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: Job) -> dict:
        return job_state(instance)


# What every run (training, prediction) shows of itself, its job included; a comment, not a docstring, so the
# schema's run components keep no description of their own.
class RunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(source="job.status")
    job = JobOutputSerializer()
    slice_id = serializers.IntegerField(allow_null=True)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
