"""Liveness and readiness. Readiness reports the writer, the reader and Redis one by one."""

from django.core.cache import cache
from django.db import OperationalError, connections
from django.http import JsonResponse

from mlops import db_routing


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database(alias: str) -> dict:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            (in_recovery,) = cursor.fetchone()
    except OperationalError as error:
        return {"ok": False, "error": str(error).strip().splitlines()[0]}
    return {"ok": True, "in_recovery": in_recovery}


def readyz(request):
    writer = _check_database(db_routing.WRITER)
    if db_routing.reader_marked_down():
        reader = {"ok": False, "error": "marked down after a failed connect; reads go to the writer"}
    else:
        reader = _check_database(db_routing.READER)
    try:
        redis_ok = {"ok": bool(cache.client.get_client().ping())}
    except Exception as error:  # any Redis client failure means "not ready", reported, not raised
        redis_ok = {"ok": False, "error": str(error)}
    checks = {"writer": writer, "reader": reader, "redis": redis_ok}
    # The reader falling back to the writer degrades but does not stop service.
    ready = writer["ok"] and redis_ok["ok"]
    return JsonResponse({"ready": ready, "degraded": not reader["ok"], "checks": checks}, status=200 if ready else 503)
