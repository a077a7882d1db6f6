"""Serving mlops.metrics: `/metrics` on a port of its own in the process that supervises the others.

gunicorn (mlops/gunicorn_conf.py) and a prefork Celery worker (the signals and the step in mlops/celery.py) each give
their processes a private directory (prometheus_client's multiprocess mode: each process writes its values there,
keyed by pid) before any of them forks, and the supervising process serves the sum of the directory. `make run`'s
single uvicorn process serves its own values (serve_web_in_process). A port that is taken is logged, not fatal: the
process serves the API or runs jobs all the same.

Only workers serve the queues' depth and their oldest queued job (QueueCollector), read at scrape time.
"""

import atexit
import logging
import os
import shutil
import tempfile
import time

from celery import bootsteps
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server, values
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# kombu's Redis transport keeps a list per queue and priority step (priority 0 is the queue's own name).
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"


def use_private_multiprocess_dir(role: str) -> str:
    """A fresh directory for this process and the ones it forks, removed at exit. Never an inherited one: another
    supervisor's directory (a `make run` environment shared by the web and the workers) would mix their values."""
    path = tempfile.mkdtemp(prefix=f"mlops-metrics-{role}-")
    os.environ[MULTIPROC_DIR_VARIABLE] = path
    # prometheus_client picks the value class when first imported; values are made only once metrics are used.
    values.ValueClass = values.get_value_class()
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def in_multiprocess_mode() -> bool:
    return MULTIPROC_DIR_VARIABLE in os.environ


def process_exited(pid: int) -> None:
    """A child ended: its live gauges (requests in flight) go; its counters stay in the sum."""
    if in_multiprocess_mode():
        multiprocess.mark_process_dead(pid)


def serve(port: int, registry: CollectorRegistry, what: str):
    """The endpoint on `port` (0: none), or None when the port cannot be bound."""
    from django.conf import settings

    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=settings.METRICS_ADDRESS, registry=registry)
    except OSError as error:
        logger.warning("metrics of the %s not served: port %s: %s", what, port, error)
        return None
    logger.info("metrics of the %s served on %s:%s/metrics", what, settings.METRICS_ADDRESS, port)
    return server


def multiprocess_registry(*collectors) -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def serve_web_in_process() -> None:
    """`make run`'s uvicorn: this process serves its own metrics. Under gunicorn the master serves them."""
    from django.conf import settings

    if not in_multiprocess_mode():
        serve(settings.METRICS_PORT, REGISTRY, "web")


def _no_queued_jobs() -> list[tuple[str, int, float]]:
    return []


_queued_jobs = _no_queued_jobs


def queued_jobs_source_register(source) -> None:
    """Set what reads the queued jobs: `source()` gives (kind, count, age of the oldest in seconds) rows across the
    tenants. The jobs app registers it at start-up (jobs/apps.py), since the platform below it cannot import it."""
    global _queued_jobs
    _queued_jobs = source


class QueueCollector:
    """Per queue: messages waiting in the broker, and the jobs queued in the tables with the age of the oldest.

    Read at scrape time, at most once per METRICS_QUEUE_CACHE_SECONDS, with one LLEN per list and one statement over
    every active tenant's partial index of queued jobs, under METRICS_QUEUE_STATEMENT_TIMEOUT_MS: a scrape costs
    the same however many scrapers there are. A part that cannot be read is left out of the scrape and logged.
    """

    def __init__(self):
        self._read_at = float("-inf")
        self._families: list = []

    def collect(self):
        from django.conf import settings

        if time.monotonic() - self._read_at >= settings.METRICS_QUEUE_CACHE_SECONDS:
            self._families = [*self._broker_families(), *self._job_families()]
            self._read_at = time.monotonic()
        return iter(self._families)

    @staticmethod
    def _queues() -> dict[str, str]:
        """Each job kind's queue, by the same routing the worker applies."""
        from celery import current_app

        router = current_app.amqp.router
        return {
            task.job_kind: router.route({}, name)["queue"].name
            for name, task in list(current_app.tasks.items())
            if getattr(task, "job_kind", None)
        }

    def _broker_families(self) -> list:
        import redis
        from celery import current_app
        from django.conf import settings

        queues = sorted({*self._queues().values(), current_app.conf.task_default_queue})
        try:
            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
            with client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    for step in KOMBU_PRIORITY_STEPS:
                        pipe.llen(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}" if step else queue)
                lengths = pipe.execute()
            client.close()
        except redis.RedisError as error:
            logger.warning("queue depth not read from the broker: %s", error)
            return []
        family = GaugeMetricFamily(
            "mlops_queue_messages", "Messages waiting in the broker, by queue.", labels=["queue"]
        )
        steps = len(KOMBU_PRIORITY_STEPS)
        for index, queue in enumerate(queues):
            family.add_metric([queue], sum(lengths[index * steps : (index + 1) * steps]))
        return [family]

    def _job_families(self) -> list:
        from django.db import DatabaseError

        queue_of = self._queues()
        counts = dict.fromkeys(set(queue_of.values()), 0)
        oldest = dict.fromkeys(counts, 0.0)
        try:
            rows = _queued_jobs()
        except DatabaseError as error:
            logger.warning("queued jobs not read: %s", error)
            return []
        for kind, count, age in rows:
            queue = queue_of.get(kind)
            if queue is not None:
                counts[queue] += count
                oldest[queue] = max(oldest[queue], float(age))
        queued = GaugeMetricFamily("mlops_jobs_queued", "Jobs queued (not yet claimed), by queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "mlops_job_oldest_queued_age_seconds",
            "Age of the oldest queued job, by queue (0: none queued).",
            labels=["queue"],
        )
        for queue in sorted(counts):
            queued.add_metric([queue], counts[queue])
            age.add_metric([queue], oldest[queue])
        return [queued, age]


class WorkerMetricsEndpoint(bootsteps.StartStopStep):
    """A Celery worker's endpoint, in its main process once the pool has started: the sum of its processes (the
    prefork children's, or its own with the solo pool) and the queues. `--metrics-port` overrides
    METRICS_WORKER_PORT, for a second worker on one host."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, metrics_port=None, **kwargs):
        super().__init__(worker, **kwargs)
        self.port = metrics_port
        self.server = None

    def start(self, worker):
        from django.conf import settings

        port = settings.METRICS_WORKER_PORT if self.port is None else self.port
        if port:
            # A worker started in-process (celery.contrib.testing) sends no celeryd_init: it has only its own values.
            registry = multiprocess_registry(QueueCollector()) if in_multiprocess_mode() else REGISTRY
            self.server = serve(port, registry, "worker")

    def stop(self, worker):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
