"""Fairness between tenants: what one tenant's flood of heavy searches does to another tenant's ordinary requests.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/noisy_neighbour.py --rows 20000

1. Two tenants, A and B, each holding --rows datarows from bench/generate.py (loaded by bench/search_data.py, kept
   and reused by later runs at the same size), and a real HTTP server (uvicorn on mlops.asgi, as in production).
2. A's mix, in turn: list projects, list datarows, get a datarow, a selective search. First A alone, closed loop with
   --calibrate-clients clients for --calibrate seconds: the rate it sustains. Then A sends half that rate, open loop
   (each request leaves at its time whether or not the previous ones answered; its latency counts from that time),
   for --duration seconds: alone, then while B's --flood clients (a process of their own) each send the heaviest
   searches B can write, one after the other.
3. The table: A's p50 / p95 / p99 and errors alone and under B's flood, and what B got (status counts).
Every request goes to 127.0.0.1; the run takes about --calibrate + 2 x --duration seconds once the data is loaded.
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ensure_generated, machine, print_table, setup_django, start_server
from search_data import load, loaded_project

# The heaviest searches B can write: every datarow matches (or must be checked), exact totals, facets over them.
HEAVY_FACETS = ["label.class", "tags", "metadata.weather", "metadata.city"]
HEAVY_QUERIES = [
    "NOT tags = 'no-such-tag'",
    "COUNT(label WHERE class = 'person') >= 0",
    "label(class UNDER 'vehicle') AND NOT prediction(model = 'yolo@8.1' AND class UNDER 'vehicle' AND score > 0.5)",
    "MATCH(metadata.caption, 'a') OR metadata.capture.gps.lat > -90",
    "prediction(model = 'yolo@8.1' AND score > 0.1) AND NOT prediction(model = 'detr@2.0' AND score > 0.99)",
]
REQUEST_TIMEOUT = 60.0


def _schemas(rows: int) -> tuple[str, str]:
    return f"bench_noisy_a_{rows}", f"bench_noisy_b_{rows}"


def _tenant_project(schema: str, rows: int):
    project = loaded_project(schema, rows)
    if project is None:
        started = time.monotonic()
        manifest = ensure_generated(rows, 0) / "manifest.jsonl"
        project = load(schema=schema, manifest=manifest, rows=rows, log=lambda line: print(line, file=sys.stderr))
        print(f"{schema}: loaded {rows:,} datarows in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return project


def _a_requests(schema: str, project, rows: int) -> list[tuple[str, str, str, dict | None]]:
    """A's mix: (name, method, path, json body)."""
    from datasets.models import DataRow, Dataset
    from tenancy.context import tenant_scope

    with tenant_scope(schema):
        dataset = Dataset.objects.get(project=project, name="bench")
        datarow_id = DataRow.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True)[rows // 2]
    base = f"/api/v1/projects/{project.pk}"
    return [
        ("list projects", "GET", "/api/v1/projects/", None),
        ("list datarows", "GET", f"{base}/datasets/{dataset.pk}/datarows", None),
        ("get a datarow", "GET", f"{base}/datasets/{dataset.pk}/datarows/{datarow_id}", None),
        (
            "selective search",
            "POST",
            f"{base}/search",
            {"query": "metadata.city = 'Oslo' AND metadata.camera.iso = 3200", "count": "estimate"},
        ),
    ]


def _send(client: httpx.Client, request: tuple) -> int | str:
    _, method, path, body = request
    try:
        return client.request(method, path, json=body).status_code
    except httpx.HTTPError as error:
        return type(error).__name__


def _calibrate(base: str, token: str, requests: list, clients: int, seconds: float) -> float:
    """Requests per second A sustains alone with `clients` closed-loop clients."""
    done = Counter()
    deadline = time.monotonic() + seconds

    def loop(offset: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT) as c:
            i = offset
            while time.monotonic() < deadline:
                done[_send(c, requests[i % len(requests)])] += 1
                i += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if set(done) - {200}:
        raise SystemExit(f"tenant A's requests failed while alone: {dict(done)}")
    return sum(done.values()) / elapsed


def _open_loop(base: str, token: str, requests: list, rate: float, seconds: float) -> list[tuple[str, float, object]]:
    """Send A's mix at `rate` per second for `seconds`; each result is (name, ms from its scheduled time, status)."""
    results: list[tuple[str, float, object]] = []
    lock = threading.Lock()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT
            )
        return local.client

    def one(request: tuple, due: float) -> None:
        status = _send(client(), request)
        with lock:
            results.append((request[0], (time.perf_counter() - due) * 1000, status))

    total = int(rate * seconds)
    start = time.perf_counter() + 0.1
    # Enough threads that a slow server, not the client, makes requests wait.
    with ThreadPoolExecutor(max_workers=64) as pool:
        for i in range(total):
            due = start + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            pool.submit(one, requests[i % len(requests)], due)
    return results


def _flood(base: str, token: str, url: str, clients: int, stop, out) -> None:
    """B: `clients` threads each sending heavy searches back to back until `stop`; puts (status counts, ms) on `out`."""
    statuses: Counter = Counter()
    times: list[float] = []
    lock = threading.Lock()

    def loop(offset: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT) as c:
            i = offset
            while not stop.is_set():
                body = {"query": HEAVY_QUERIES[i % len(HEAVY_QUERIES)], "count": "exact", "facets": HEAVY_FACETS}
                started = time.perf_counter()
                try:
                    status: object = c.post(url, json=body).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                with lock:
                    statuses[status] += 1
                    times.append((time.perf_counter() - started) * 1000)
                i += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT + 5)
    with lock:
        out.put((dict(statuses), list(times)))


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100)[q - 1]


def _a_row(scenario: str, results: list, rate: float) -> list:
    ok = [ms for _, ms, status in results if status == 200]
    errors = Counter(str(status) for _, _, status in results if status != 200)
    return [
        scenario,
        f"{rate:.1f}",
        len(results),
        f"{_percentile(ok, 50):.0f}",
        f"{_percentile(ok, 95):.0f}",
        f"{_percentile(ok, 99):.0f}",
        ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="datarows per tenant")
    parser.add_argument("--duration", type=float, default=30, help="seconds of A's open loop, alone and under flood")
    parser.add_argument("--calibrate", type=float, default=10, help="seconds of A alone, closed loop")
    parser.add_argument("--calibrate-clients", type=int, default=4)
    parser.add_argument("--flood", type=int, default=20, help="B's concurrent clients")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_DEV_AUTH"] = "1"  # the bench issues its own tokens; the server trusts the same issuer
    setup_django()
    from tenancy.dev_auth import issue_dev_token

    schema_a, schema_b = _schemas(args.rows)
    project_a, project_b = _tenant_project(schema_a, args.rows), _tenant_project(schema_b, args.rows)
    requests = _a_requests(schema_a, project_a, args.rows)
    token_a = issue_dev_token(tenant=schema_a, user="bench-a", role="viewer", workspace="bench")
    token_b = issue_dev_token(tenant=schema_b, user="bench-b", role="viewer", workspace="bench")
    # The bench's datarows point at s3:// URIs; a datarow's presigned image URL is signed locally, never fetched.
    server, base = start_server(
        OUT / "bench-noisy-neighbour-server.log",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    context = multiprocessing.get_context("spawn")
    try:
        for request in requests:  # warm: connections, caches, plans; and each must work
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token_a}"}, timeout=30) as c:
                status = _send(c, request)
                if status != 200:
                    raise SystemExit(f"tenant A's {request[0]} answered {status}")
        sustained = _calibrate(base, token_a, requests, args.calibrate_clients, args.calibrate)
        rate = sustained / 2
        print(
            f"A alone sustains {sustained:.1f} requests/s ({args.calibrate_clients} clients); sending {rate:.1f}/s",
            file=sys.stderr,
        )
        alone = _open_loop(base, token_a, requests, rate, args.duration)
        stop, out = context.Event(), context.Queue()
        flood = context.Process(
            target=_flood, args=(base, token_b, f"/api/v1/projects/{project_b.pk}/search", args.flood, stop, out)
        )
        flood_started = time.monotonic()
        flood.start()
        time.sleep(2)  # B's clients are all sending
        flooded = _open_loop(base, token_a, requests, rate, args.duration)
        stop.set()
        b_statuses, b_times = out.get(timeout=REQUEST_TIMEOUT + 30)
        flood_seconds = time.monotonic() - flood_started
        flood.join(10)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:  # a request still running a long statement
            server.kill()
    title = (
        f"Noisy neighbour, {args.rows:,} datarows per tenant ({time.strftime('%Y-%m-%d')}, {machine()}); "
        f"tenant A's requests, ms from each request's scheduled time (open loop)"
    )
    print_table(
        title,
        ["scenario", "A req/s", "A requests", "p50", "p95", "p99", "A errors"],
        [_a_row("A alone", alone, rate), _a_row(f"A while B floods ({args.flood} clients)", flooded, rate)],
    )
    by_kind = [
        [
            name,
            f"{_percentile([ms for n, ms, s in alone if n == name and s == 200], 50):.0f}",
            f"{_percentile([ms for n, ms, s in alone if n == name and s == 200], 95):.0f}",
            f"{_percentile([ms for n, ms, s in flooded if n == name and s == 200], 50):.0f}",
            f"{_percentile([ms for n, ms, s in flooded if n == name and s == 200], 95):.0f}",
        ]
        for name, *_ in requests
    ]
    print_table("tenant A by request, ms", ["request", "alone p50", "alone p95", "flooded p50", "flooded p95"], by_kind)
    print_table(
        f"tenant B's flood ({args.flood} clients, {flood_seconds:.0f} s)",
        ["statuses", "requests", "p50 ms", "p95 ms"],
        [
            [
                ", ".join(f"{k}: {v}" for k, v in sorted(b_statuses.items(), key=str)),
                len(b_times),
                f"{_percentile(b_times, 50):.0f}",
                f"{_percentile(b_times, 95):.0f}",
            ]
        ],
    )
    print(
        f"\nA alone sustained {sustained:.1f} requests/s closed loop ({args.calibrate_clients} clients); A's mix: "
        f"{', '.join(name for name, *_ in requests)}. B's searches (count=exact, facets {', '.join(HEAVY_FACETS)}):"
    )
    for query in HEAVY_QUERIES:
        print(f"- `{query}`")


if __name__ == "__main__":
    main()
