"""Exact facets through REST with the object facets on sessions of their own, against one statement.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/search_facets.py --rows 1000000

Runs on the tenant bench/search.py loaded (`bench_search_<rows>`; run that first). Two HTTP servers, one with
SEARCH_PARALLEL_FACETS on and one with it off, answer the same calls in turn (so a noisy machine weighs on both alike):
per query of bench/search.py, the page, exact total and its 3 facets in one call, --repeat times each, after a warm
call; prints p50 and p95 of each and whether the answers were equal.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine, print_table, setup_django, start_server
from search_data import bench_schema, loaded_project

# bench/search.py by path: the name `search` is the Django app's.
_spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).resolve().parent / "search.py")
bench_search = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_search)
FACETS, FACETS_MS, QUERIES, p95 = bench_search.FACETS, bench_search.FACETS_MS, bench_search.QUERIES, bench_search.p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", help="run only the queries whose kind contains this text")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_DEV_AUTH"] = "1"
    setup_django()
    from tenancy.dev_auth import issue_dev_token

    schema = bench_schema(args.rows)
    project = loaded_project(schema, args.rows)
    if project is None:
        raise SystemExit(f"no bench tenant {schema} with {args.rows:,} rows: run bench/search.py --rows {args.rows}")
    servers = {
        setting: start_server(OUT / f"bench-search-facets-{setting}.log", SEARCH_PARALLEL_FACETS=setting)
        for setting in ("1", "0")
    }
    token = issue_dev_token(tenant=schema, user="bench", role="viewer", workspace="bench")
    rows = []
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            for kind, _, text in QUERIES:
                if args.only and args.only not in kind:
                    continue
                body = {"query": text, "count": "exact", "facets": FACETS}
                times, answers = {"1": [], "0": []}, {}
                for setting, (_, base) in servers.items():  # warm: plans, caches, pooled connections
                    client.post(f"{base}/api/v1/projects/{project.pk}/search", json=body).raise_for_status()
                for _ in range(args.repeat):
                    for setting, (_, base) in servers.items():
                        started = time.perf_counter()
                        answer = client.post(f"{base}/api/v1/projects/{project.pk}/search", json=body)
                        times[setting].append((time.perf_counter() - started) * 1000)
                        answer.raise_for_status()
                        answers[setting] = {key: answer.json()[key] for key in ("results", "total", "facets")}
                rows.append(
                    [
                        kind,
                        f"{answers['1']['total']['value']:,}",
                        f"{statistics.median(times['0']):,.0f}",
                        f"{p95(times['0']):,.0f}",
                        f"{statistics.median(times['1']):,.0f}",
                        f"{p95(times['1']):,.0f}",
                        "yes" if answers["1"] == answers["0"] else "NO",
                        "yes" if statistics.median(times["1"]) < FACETS_MS else "NO",
                    ]
                )
                print(f"{kind}: done", file=sys.stderr)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(30)
    print_table(
        f"Page + exact total + 3 facets through REST, {args.rows:,} datarows ({time.strftime('%Y-%m-%d')}, "
        f"{machine()}); ms, warm, {args.repeat} calls each, alternating",
        [
            "query kind",
            "matches",
            "one statement p50",
            "p95",
            "parallel sessions p50",
            "p95",
            "same answer",
            f"p50 < {FACETS_MS}",
        ],
        rows,
    )
    print(f"\nfacets: {', '.join(FACETS)}")


if __name__ == "__main__":
    main()
