"""How long a job of a kind may run, and how many jobs of one tenant may run at once on a queue (settings)."""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class JobTimeLimit:
    soft_seconds: float
    hard_seconds: float
    setting: str  # the setting that gives soft_seconds, for error messages

    def soft_error(self) -> str:
        return f"The job ran past its time limit of {self.soft_seconds:g} s (setting {self.setting}) and was stopped."

    def hard_error(self) -> str:
        return (
            f"The job ran past its time limit of {self.soft_seconds:g} s (setting {self.setting}) and did not stop; "
            f"its worker process was killed {settings.JOB_HARD_TIME_LIMIT_GRACE_SECONDS:g} s later "
            f"(setting JOB_HARD_TIME_LIMIT_GRACE_SECONDS)."
        )


def job_time_limit(kind: str) -> JobTimeLimit:
    if kind in settings.JOB_TIME_LIMITS:
        soft, setting = settings.JOB_TIME_LIMITS[kind], f'JOB_TIME_LIMITS["{kind}"]'
    else:
        soft, setting = settings.JOB_TIME_LIMIT_DEFAULT_SECONDS, "JOB_TIME_LIMIT_DEFAULT_SECONDS"
    return JobTimeLimit(
        soft_seconds=soft, hard_seconds=soft + settings.JOB_HARD_TIME_LIMIT_GRACE_SECONDS, setting=setting
    )


def job_max_running(queue: str) -> int:
    """Running jobs one tenant may have on `queue`."""
    return int(settings.JOB_MAX_RUNNING_PER_TENANT_BY_QUEUE.get(queue, settings.JOB_MAX_RUNNING_PER_TENANT))
