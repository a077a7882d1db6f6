"""Where a simple count's time goes (issue 21, point 3): one tag, and two metadata values, through REST (page of 100
with the exact total) broken down into the selector in-process, each SQL statement it issues, the serialisation,
and what is left for HTTP, authentication and the tenant; next to the bare count and page on the reference layout.
--shapes takes any shape of bench/search_reference.py (a statistic too); --plans prints, per shape, the plan of
the engine's slowest statement and of the reference's SQL (EXPLAIN ANALYZE, BUFFERS: what bounds a shape).

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
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine, print_table, setup_django, start_server
from search_data import bench_schema, loaded_project
from search_reference import SHAPES, reference_schema, time_sql

SHAPE_NAMES = ("one tag", "two metadata values and a width range")


def _median(times: list[float]) -> str:
    return f"{statistics.median(times):.1f}"


def _plan_lines(node: dict, depth: int = 0) -> list[str]:
    """One line a node: its type and relation or index, rows, loops, its own inclusive time and the blocks it read."""
    target = node.get("Index Name") or node.get("Relation Name") or ""
    blocks = node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
    line = (
        f"{'  ' * depth}{node['Node Type']} {target}".rstrip()
        + f": rows {node.get('Actual Rows', 0):,.0f} x {node.get('Actual Loops', 1)}, "
        f"{node.get('Actual Total Time', 0):,.1f} ms, {blocks:,} blocks"
    )
    return [line] + [child for plan in node.get("Plans", ()) for child in _plan_lines(plan, depth + 1)]


def explain(using: str, sql: str, params) -> list[str]:
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()
    plan = plan if isinstance(plan, list) else orjson.loads(plan)
    return _plan_lines(plan[0]["Plan"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--shapes", nargs="+", default=SHAPE_NAMES, choices=[shape.name for shape in SHAPES])
    parser.add_argument("--plans", action="store_true", help="the plans of the slowest statement and the reference")
    args = parser.parse_args()
    os.environ["MLOPS_DEV_AUTH"] = "1"
    setup_django()
    from django.db import connections

    from search.apis import ProjectSearchApi, ProjectSearchStatisticsApi
    from search.selectors import search_datarows, search_statistics
    from tenancy.context import tenant_scope
    from tenancy.dev_auth import issue_dev_token

    schema = bench_schema(args.rows)
    project = loaded_project(schema, args.rows)
    if project is None:
        raise SystemExit(f"no bench tenant of {args.rows:,} rows: run bench/search.py --rows {args.rows} --reference")
    reference = reference_schema(args.rows)
    server, base = start_server(OUT / "bench-count-cost-server.log")
    token = issue_dev_token(tenant=schema, user="bench", role="viewer", workspace="bench")
    rows, plans = [], []
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            for shape in (shape for shape in SHAPES if shape.name in args.shapes):
                url = f"{base}/api/v1/projects/{project.pk}/{shape.endpoint}"
                rest = []
                for attempt in range(2 + args.repeat):
                    started = time.perf_counter()
                    client.post(url, json=shape.rest).raise_for_status()
                    if attempt >= 2:
                        rest.append((time.perf_counter() - started) * 1000)
                selector, serialise = [], []
                per_call: list[dict[str, float]] = []  # each call's milliseconds per statement kind
                slowest: dict = {}  # the slowest statement of the last call: its milliseconds, alias, SQL and params

                def timed_statement(execute, sql, params, many, context, per_call=per_call, slowest=slowest):
                    started = time.perf_counter()
                    try:
                        return execute(sql, params, many, context)
                    finally:
                        kind = " ".join(sql.split()[:4])[:48]
                        spent = (time.perf_counter() - started) * 1000
                        per_call[-1][kind] += spent
                        if spent > slowest.get("ms", -1):
                            slowest.update(ms=spent, using=context["connection"].alias, sql=sql, params=params)

                if shape.statistic:
                    body = ProjectSearchStatisticsApi.InputSerializer(data=shape.rest)
                    body.is_valid(raise_exception=True)
                    requested = body.validated_data["statistics"]
                with tenant_scope(schema):
                    for attempt in range(2 + args.repeat):
                        per_call.append(defaultdict(float))
                        slowest.clear()
                        with (
                            connections["default"].execute_wrapper(timed_statement),
                            connections["reader"].execute_wrapper(timed_statement),
                        ):
                            started = time.perf_counter()
                            if shape.statistic:
                                result = search_statistics(
                                    project=project, query_text=shape.rest["query"], statistics=requested
                                )
                                output = ProjectSearchStatisticsApi.OutputSerializer
                            else:
                                result = search_datarows(
                                    project=project, query_text=shape.rest["query"], limit=shape.rest["page_size"]
                                )
                                output = ProjectSearchApi.OutputSerializer
                            middle = time.perf_counter()
                            output(result).data  # noqa: B018 (the serialisation is what is timed)
                            ended = time.perf_counter()
                        if attempt >= 2:
                            selector.append((middle - started) * 1000)
                            serialise.append((ended - middle) * 1000)
                    if args.plans:
                        engine_plan = explain(slowest["using"], slowest["sql"], slowest["params"])
                del per_call[:2]
                if args.plans:
                    reference_plans = [explain("reader", sql.format(s=reference), None) for sql in shape.sql]
                    plans.append((shape.name, slowest["sql"], engine_plan, shape.sql, reference_plans))
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
    for name, engine_sql, engine_plan, reference_sql, reference_plans in plans:
        print(f"\n{name}\n  the engine's slowest statement: {' '.join(engine_sql.split())}")
        print("\n".join(f"    {line}" for line in engine_plan))
        for sql, plan in zip(reference_sql, reference_plans, strict=True):
            print(f"  reference: {sql.format(s=reference)}")
            print("\n".join(f"    {line}" for line in plan))


if __name__ == "__main__":
    main()
