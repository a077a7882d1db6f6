"""Training runs go to their own queue, which only the training worker (compose, devstack) consumes."""

from celery.app.utils import find_app
from django.conf import settings

from devstack.__main__ import platform_commands
from mlops.celery import app as celery_app
from tests.fresh_process import run_python
from tests.test_compose import load_compose, option_value


def _queue_of(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def test_training_and_prediction_runs_are_routed_to_the_training_queue_and_nothing_else_is():
    import predictions.tasks
    import training.tasks

    assert _queue_of(training.tasks.training_run_execute_task.name) == settings.TRAINING_QUEUE == "training"
    assert _queue_of(predictions.tasks.prediction_run_execute_task.name) == "training"
    assert _queue_of("datasets.tasks.dataset_import") == celery_app.conf.task_default_queue != "training"


def test_compose_runs_a_training_worker_like_the_default_worker_but_only_on_the_training_queue():
    services = load_compose()["services"]
    worker, training = services["worker"], services["training-worker"]
    # the same environment, volumes and dependencies as the default worker, in the image built with torch
    for key in ("environment", "volumes", "depends_on"):
        assert training[key] == worker[key], key
    assert worker["build"] == "."
    assert training["build"] == {"context": ".", "args": {"REQUIREMENTS": "requirements-training.txt"}}
    assert training["command"][0] == "celery" and "worker" in training["command"]
    assert find_app(option_value(training["command"], "-A", "--app")) is celery_app
    assert option_value(training["command"], "-Q", "--queues") == "training"
    # in the worker process itself: a trainer's DataLoader workers cannot start inside a prefork child
    assert option_value(training["command"], "-P", "--pool") == "solo"
    # the default worker keeps to the default queue, so a web-sized host never picks up a training run
    assert option_value(worker["command"], "-Q", "--queues") is None


def test_devstack_starts_a_worker_on_the_training_queue():
    workers = [command for command in platform_commands("8000").values() if "worker" in command]
    assert [option_value(command, "-Q") for command in workers] == [None, "training"]
    assert option_value(workers[1], "--pool") == "solo"


def test_the_web_process_serves_the_training_api_and_checks_configs_without_importing_torch():
    # given: a fresh interpreter with the web's imports (every URL's views) and a config check, as POST models does
    result = run_python(
        "import sys, django; django.setup(); import mlops.urls; from django.urls import get_resolver; "
        "get_resolver().url_patterns; "
        "from training.services import trainer_config_validate, trainer_resolve; "
        "trainer_config_validate(trainer=trainer_resolve(name='image-classifier'), config={'epochs': 2}); "
        "print('torch' in sys.modules)",
        {"MLOPS_ENV": "test"},
    )
    # then: torch belongs to the training workers only
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
