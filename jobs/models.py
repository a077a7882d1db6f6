import uuid

from django.db import models


class Job(models.Model):
    """One long operation in a tenant (import, training, the demo count): the row is the source of truth.

    Websocket events mirror it; `revision` grows by one on every write, so a client can tell what it missed.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # A UUID, not a per-schema sequence: the id names one job across tenants, logs, messages and groups.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=100)
    params = models.JSONField(default=dict)
    workspace_id = models.CharField(max_length=100)
    owner_id = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    counters = models.JSONField(default=dict)
    message = models.CharField(max_length=500, blank=True, default="")
    error = models.TextField(blank=True, default="")
    celery_task_id = models.CharField(max_length=255)
    # When the job's message was last sent, and how many times it was sent again (jobs.services.job_resend_lost).
    sent_at = models.DateTimeField(null=True, blank=True)
    resends = models.PositiveSmallIntegerField(default=0)
    revision = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace_id", "-created_at", "-id"], name="job_workspace_recent"),
            # The reaper's scan: running jobs by heartbeat age, a small partial index.
            models.Index(fields=["heartbeat_at"], condition=models.Q(status="running"), name="job_running_heartbeat"),
            # The reaper's other scan: queued jobs by when their message was sent.
            models.Index(fields=["sent_at"], condition=models.Q(status="queued"), name="job_queued_sent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED})
