"""Liveness and readiness. Readiness reports the writer, the reader and Redis one by one."""

from django.core.cache import cache
from django.db import OperationalError, connections
from django.http import JsonResponse

from mlops import db_routing
from mlops.exceptions import DatabaseBusy


def healthz(request):
    return JsonResponse({"status": "ok"})


def _in_recovery(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        (in_recovery,) = cursor.fetchone()
    return in_recovery


def _check_writer() -> dict:
    try:
        return {"ok": True, "in_recovery": _in_recovery(db_routing.WRITER)}
    except OperationalError as error:
        return {"ok": False, "error": db_routing.first_line(error)}


def _check_reader() -> dict:
    """The router's own check, so /readyz neither hammers a marked-down reader nor disagrees with the router."""
    try:
        available = db_routing.reader_available()
    except DatabaseBusy as busy:
        # Up, and still read from; every connection of this process's pool is in use.
        return {"ok": False, "busy": True, "error": busy.message, "reads_from": db_routing.READER}
    if available:
        try:
            return {"ok": True, "in_recovery": _in_recovery(db_routing.READER), "reads_from": db_routing.READER}
        except OperationalError as error:
            db_routing.mark_reader_down(error)
    outage = db_routing.reader_outage()
    return {
        "ok": False,
        "error": outage.error if outage else "unreachable",
        "retry_in_seconds": round(outage.seconds_left(), 1) if outage else 0.0,
        "reads_from": db_routing.WRITER,
    }


def _check_redis() -> dict:
    try:
        # A round trip through the cache's own client (Django's RedisCache has no public ping).
        cache.get("readyz:probe")
    except Exception as error:  # any Redis client failure means "not ready", reported, not raised
        return {"ok": False, "error": str(error)}
    return {"ok": True}


def readyz(request):
    checks = {"writer": _check_writer(), "reader": _check_reader(), "redis": _check_redis()}
    # The reader falling back to the writer degrades but does not stop service.
    ready = checks["writer"]["ok"] and checks["redis"]["ok"]
    return JsonResponse(
        {"ready": ready, "degraded": not checks["reader"]["ok"], "checks": checks}, status=200 if ready else 503
    )


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthProbeMiddleware:
    """Answers the probes before the host check and the HTTPS redirect: load balancers and orchestrators probe over
    plain HTTP with the instance's address as Host, which ALLOWED_HOSTS rightly does not list."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info) if request.method in ("GET", "HEAD") else None
        return probe(request) if probe else self.get_response(request)
