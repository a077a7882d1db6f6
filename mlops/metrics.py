"""What every process measures for Prometheus, and the one-line hooks the code calls to measure it.

mlops.metrics_server serves these on ports of their own (METRICS_PORT, METRICS_WORKER_PORT), never the API's, and
sums the processes of a gunicorn master or a prefork Celery worker (prometheus_client's multiprocess mode).
Every label is bounded: routes are URL patterns, never paths; kinds, queues, formats and engines are our own names;
the tenant only while METRICS_TENANT_LABEL is on (a series per tenant); never a user or an id.
"""

import math
import time
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.urls import Resolver404, resolve
from prometheus_client import Counter, Gauge, Histogram

TENANT = ("tenant",) if settings.METRICS_TENANT_LABEL else ()
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests take milliseconds to seconds; a search may run up to SEARCH_STATEMENT_TIMEOUT_MS.
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Jobs take seconds (a count) to hours (a training).
JOB_SECONDS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)

http_requests = Counter(
    "mlops_http_requests",
    "HTTP requests answered, by route (URL pattern), method and status.",
    ["route", "method", "status"],
)
http_duration = Histogram(
    "mlops_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["route", "method"],
    buckets=SECONDS,
)
http_in_flight = Gauge(
    "mlops_http_requests_in_flight", "HTTP requests being answered now.", multiprocess_mode="livesum"
)
http_database = Histogram(
    "mlops_http_request_database_seconds",
    "Time an HTTP request spent in database statements, by route.",
    ["route"],
    buckets=SECONDS,
)
http_throttled = Counter(
    "mlops_http_throttled", "Requests refused with 429 (a rate limit or a concurrency share).", TENANT
)
db_reads = Counter(
    "mlops_db_reads",
    "Reads routed, by database (reader, writer) and reason (reader, pinned: a write "
    "or a transaction needs the writer, reader_down, reader_behind: it has not replayed the tenant's last job "
    "change yet).",
    ["database", "reason"],
)
db_reader_fallbacks = Counter(
    "mlops_db_reader_fallbacks", "Times this process marked the reader down and read from the writer instead."
)
statement_timeouts = Counter(
    "mlops_statement_timeouts", "Statements stopped at their timeout, by where (request, search).", ["where"]
)
auth_cache = Counter(
    "mlops_auth_cache_lookups",
    "Token introspection cache lookups, by result (hit, miss, unavailable: Redis down).",
    ["result"],
)
jobs_started = Counter("mlops_jobs_started", "Jobs claimed by a worker, by kind.", ["kind", *TENANT])
jobs_finished = Counter(
    "mlops_jobs_finished", "Jobs ended, by kind and status (succeeded, failed, cancelled).", ["kind", "status", *TENANT]
)
job_duration = Histogram(
    "mlops_job_duration_seconds",
    "Time from a job's start to its end, by kind and status.",
    ["kind", "status"],
    buckets=JOB_SECONDS,
)
job_turn_waits = Counter(
    "mlops_job_turn_waits", "Job messages sent again because the tenant ran its share of jobs.", ["kind"]
)
job_reaper_actions = Counter(
    "mlops_job_reaper_actions",
    "Reaper actions: failed (a running job's worker was lost), resent (a lost message).",
    ["action"],
)
import_rows = Counter("mlops_import_rows", "Lines read by dataset imports, by format.", ["format", *TENANT])
import_duration = Histogram(
    "mlops_import_duration_seconds", "Time a dataset import took, by format.", ["format"], buckets=JOB_SECONDS
)
search_duration = Histogram(
    "mlops_search_duration_seconds",
    "Time a search took, by engine and count mode.",
    ["engine", "count"],
    buckets=SECONDS,
)
# The most recent step of the tenant's running run; 0 images/s and no loss once it ends.
training_images_per_second = Gauge(
    "mlops_training_images_per_second",
    "Images per second of a running training run.",
    TENANT,
    multiprocess_mode="mostrecent",
)
training_loss = Gauge(
    "mlops_training_loss", "Training loss at the latest step of a running run.", TENANT, multiprocess_mode="mostrecent"
)


def _labelled(metric, **labels):
    return metric.labels(**labels) if labels else metric


def _tenant(schema: str | None = None) -> dict:
    if not TENANT:
        return {}
    return {"tenant": schema or connections["default"].schema_name}


# --- web

_request_database_seconds: ContextVar[list[float] | None] = ContextVar("request_database_seconds", default=None)


def _time_statement(execute, sql, params, many, context):
    spent = _request_database_seconds.get()
    if spent is None:
        return execute(sql, params, many, context)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        spent[0] += time.perf_counter() - started


@receiver(connection_created)
def _watch_statement_time(sender, connection, **kwargs) -> None:
    # Every connection of any thread a request's context reaches (a search's facet sessions too); pooled ones send this
    # on each checkout.
    if _time_statement not in connection.execute_wrappers:
        connection.execute_wrappers.append(_time_statement)


def _route(request) -> str:
    """The URL pattern that matched; one a middleware answered before routing (401, health) is resolved here."""
    from mlops.health import PROBES  # not at the top: the health checks import the router, which imports this

    match = request.resolver_match
    if match is None and request.path_info in PROBES:
        return request.path_info.lstrip("/")
    if match is None:
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return "unmatched"
    return match.route or "unmatched"


class RequestMetricsMiddleware:
    """Counts, times and tracks every request: first in MIDDLEWARE, so it sees every answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        spent = [0.0]
        token = _request_database_seconds.set(spent)
        http_in_flight.inc()
        try:
            response = self.get_response(request)
        finally:
            http_in_flight.dec()
            _request_database_seconds.reset(token)
        route, method = _route(request), request.method if request.method in HTTP_METHODS else "other"
        http_requests.labels(route, method, str(response.status_code)).inc()
        http_duration.labels(route, method).observe(time.perf_counter() - started)
        http_database.labels(route).observe(spent[0])
        if response.status_code == 429:
            principal = getattr(request, "principal", None)
            _labelled(http_throttled, **_tenant(principal.tenant_schema if principal else "none")).inc()
        return response


def read_routed(database: str, reason: str) -> str:
    """db_for_read's answer, counted."""
    db_reads.labels(database, reason).inc()
    return database


def count_statement_timeout(where: str) -> None:
    statement_timeouts.labels(where).inc()


def count_introspection_cache(result: str) -> None:
    auth_cache.labels(result).inc()


# --- jobs


def job_started(*, kind: str) -> None:
    _labelled(jobs_started, kind=kind, **_tenant()).inc()


def job_ended(*, job) -> None:
    _labelled(jobs_finished, kind=job.kind, status=job.status, **_tenant()).inc()
    if job.started_at and job.finished_at:
        job_duration.labels(job.kind, job.status).observe((job.finished_at - job.started_at).total_seconds())


def count_turn_wait(*, kind: str) -> None:
    job_turn_waits.labels(kind).inc()


def count_reaper_actions(*, failed: int, resent: int) -> None:
    job_reaper_actions.labels("failed").inc(failed)
    job_reaper_actions.labels("resent").inc(resent)


class ImportMeter:
    """One import's lines as they are read (for rows/s) and its duration once it ends."""

    def __init__(self, import_format: str):
        self.format, self.counted, self.started = import_format, 0, time.monotonic()
        self.rows = _labelled(import_rows, format=import_format, **_tenant())

    def lines_read(self, total: int) -> None:
        self.rows.inc(max(total - self.counted, 0))
        self.counted = max(total, self.counted)

    def finished(self) -> None:
        import_duration.labels(self.format).observe(time.monotonic() - self.started)


def observe_search(*, engine: str, count: str, seconds: float) -> None:
    search_duration.labels(engine, count).observe(seconds)


def training_step(*, images_per_second: float, loss: float) -> None:
    _labelled(training_images_per_second, **_tenant()).set(images_per_second)
    _labelled(training_loss, **_tenant()).set(loss)


@contextmanager
def training_observed():
    """Around a run: once it ends, however, its tenant shows no run going (0 images/s, no loss)."""
    labels = _tenant()
    try:
        yield
    finally:
        _labelled(training_images_per_second, **labels).set(0)
        _labelled(training_loss, **labels).set(math.nan)
