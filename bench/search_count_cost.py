"""Where a simple count's time goes (issue 21, point 3): one tag, and two metadata values, through REST (page of 100
with the exact total) broken down into the selector in-process, each SQL statement it issues, the serialisation,
and what is left for HTTP, authentication and the tenant; next to the bare count and page on the reference layout.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/search_count_cost.py --rows 100000

Uses the tenant and the reference schema that bench/search.py --reference loaded for --rows (run that first).
"""

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine, print_table, setup_django, start_server
from search_data import bench_schema, loaded_project
from search_reference import SHAPES, reference_schema, time_sql

SHAPE_NAMES = ("one tag", "two metadata values and a width range")


def _median(times: list[float]) -> str:
    return f"{statistics.median(times):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    os.environ["MLOPS_DEV_AUTH"] = "1"
    setup_django()
    from django.db import connections

    from search.apis import ProjectSearchApi
    from search.selectors import search_datarows
    from tenancy.context import tenant_scope
    from tenancy.dev_auth import issue_dev_token

    schema = bench_schema(args.rows)
    project = loaded_project(schema, args.rows)
    if project is None:
        raise SystemExit(f"no bench tenant of {args.rows:,} rows: run bench/search.py --rows {args.rows} --reference")
    reference = reference_schema(args.rows)
    server, base = start_server(OUT / "bench-count-cost-server.log")
    token = issue_dev_token(tenant=schema, user="bench", role="viewer", workspace="bench")
    rows = []
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            for shape in (shape for shape in SHAPES if shape.name in SHAPE_NAMES):
                url = f"{base}/api/v1/projects/{project.pk}/search"
                rest = []
                for attempt in range(2 + args.repeat):
                    started = time.perf_counter()
                    client.post(url, json=shape.rest).raise_for_status()
                    if attempt >= 2:
                        rest.append((time.perf_counter() - started) * 1000)
                selector, serialise = [], []
                per_call: list[dict[str, float]] = []  # each call's milliseconds per statement kind

                def timed_statement(execute, sql, params, many, context, per_call=per_call):
                    started = time.perf_counter()
                    try:
                        return execute(sql, params, many, context)
                    finally:
                        kind = " ".join(sql.split()[:4])[:48]
                        per_call[-1][kind] += (time.perf_counter() - started) * 1000

                with tenant_scope(schema):
                    for attempt in range(2 + args.repeat):
                        per_call.append(defaultdict(float))
                        with (
                            connections["default"].execute_wrapper(timed_statement),
                            connections["reader"].execute_wrapper(timed_statement),
                        ):
                            started = time.perf_counter()
                            result = search_datarows(
                                project=project, query_text=shape.rest["query"], limit=shape.rest["page_size"]
                            )
                            middle = time.perf_counter()
                            ProjectSearchApi.OutputSerializer(result).data  # noqa: B018 (the serialisation is what is timed)
                            ended = time.perf_counter()
                        if attempt >= 2:
                            selector.append((middle - started) * 1000)
                            serialise.append((ended - middle) * 1000)
                del per_call[:2]
                sql = time_sql(reference, shape, args.repeat)
                rows.append([shape.name, "REST call (client)", _median(rest)])
                rows.append([shape.name, "selector in-process", _median(selector)])
                rows.extend(
                    [shape.name, f"  SQL: {kind}", _median([call[kind] for call in per_call])] for kind in per_call[0]
                )
                rows.append([shape.name, "serialisation (OutputSerializer)", _median(serialise)])
                rows.append([shape.name, "bare SQL page + count (reference layout)", _median(sql)])
    finally:
        server.terminate()
        server.wait(10)
    print_table(
        f"Where a simple count's time goes, {args.rows:,} datarows ({time.strftime('%Y-%m-%d')}, {machine()}); "
        f"ms, p50 of {args.repeat}",
        ["shape", "part", "p50"],
        rows,
    )


if __name__ == "__main__":
    main()
