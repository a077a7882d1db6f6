"""Each job kind's task. `jobs.runner.job_task(kind=...)` registers a task here when its app's tasks module is
imported, and JobsConfig.ready imports every app's tasks module at start-up, so a service starts a job by its kind
name (job_create) and never imports a task module (as Celery finds its tasks by name)."""

from celery import Task

_TASKS: dict[str, Task] = {}


def job_task_register(*, kind: str, task: Task) -> None:
    if kind in _TASKS:
        raise ValueError(f"Job kind {kind!r} has a task already; each kind has one.")
    _TASKS[kind] = task


def job_task_get(*, kind: str) -> Task:
    try:
        return _TASKS[kind]
    except KeyError:
        raise LookupError(f"No task runs jobs of kind {kind!r} (is its app's tasks module imported?).") from None


def job_tasks() -> dict[str, Task]:
    """Every kind's task, by kind."""
    return dict(_TASKS)
