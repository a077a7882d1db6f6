"""gunicorn's hooks for the web (`gunicorn -c python:mlops.gunicorn_conf`): one /metrics for all its workers.

Loaded by the master before it forks any worker, so every worker writes to the directory the master serves.
"""

import os

from mlops.metrics_server import multiprocess_registry, process_exited, serve, use_private_multiprocess_dir

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
use_private_multiprocess_dir("web")


def when_ready(server):
    from django.conf import settings

    serve(settings.METRICS_PORT, multiprocess_registry(), "web")


def child_exit(server, worker):
    process_exited(worker.pid)
