"""The fixed cost of a request through the ASGI server, with and without the database connection pool.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/request_overhead.py

uvicorn on mlops.asgi (as in production, one process), a throwaway tenant with one project and a development
token; each call is timed by the client, warm. `DATABASE_POOL=0` is the setting without the pool: Django's
per-thread persistent connections, which the ASGI server's thread per request never reuses (every request opens
a writer and a reader connection). The Redis cache pool (one per process) is on in both rows.
"""

import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine, print_table, setup_django, start_server, throwaway_tenant

CALLS = 200


def _timed(client: httpx.Client, method: str, url: str, **kwargs) -> list[float]:
    for _ in range(5):  # connections, caches, plans
        client.request(method, url, **kwargs).raise_for_status()
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        client.request(method, url, **kwargs).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_DEV_AUTH"] = "1"  # the bench issues its own token; the server trusts the same issuer
    setup_django()
    from tenancy.dev_auth import issue_dev_token

    rows = []
    with throwaway_tenant("bench_overhead") as tenant:
        token = issue_dev_token(tenant=tenant.schema_name, user="bench", role="editor", workspace="bench")
        project_id = None
        for pool in ("0", "1"):
            server, base = start_server(OUT / f"bench-overhead-server-{pool}.log", DATABASE_POOL=pool)
            try:
                with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                    if project_id is None:
                        project_id = client.post("/api/v1/projects/", json={"name": "overhead"}).json()["id"]
                    calls = {
                        "GET /healthz (no database)": ("GET", "/healthz", {}),
                        "GET a project": ("GET", f"/api/v1/projects/{project_id}", {}),
                        "POST a search (one-row query)": (
                            "POST",
                            f"/api/v1/projects/{project_id}/search",
                            {"json": {"query": "external_id = 'x'"}},
                        ),
                    }
                    for name, (method, url, kwargs) in calls.items():
                        times = _timed(client, method, url, **kwargs)
                        rows.append(
                            [
                                name,
                                "on" if pool == "1" else "off",
                                f"{statistics.median(times):.1f}",
                                f"{statistics.quantiles(times, n=20)[-1]:.1f}",
                            ]
                        )
            finally:
                server.terminate()
                server.wait(10)
    rows.sort(key=lambda row: (row[0], row[1]))
    print_table(
        f"Request cost through uvicorn, {CALLS} calls each ({time.strftime('%Y-%m-%d')}, {machine()}); ms",
        ["call", "DATABASE_POOL", "p50", "p95"],
        rows,
    )


if __name__ == "__main__":
    main()
