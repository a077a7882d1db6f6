"""Statistics through REST against the bare SQL they stand for.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/search_statistics.py --rows 1000000

Runs on the tenant bench/search.py loaded (`bench_search_<rows>`; run that first). One HTTP server (uvicorn on
mlops.asgi, reads on the replica); per case, POST /api/v1/projects/{id}/search/statistics --repeat times after a warm
call (p50, p95 of the client's wall time); the engine's statement alone on the reader (p50 of --repeat, warm), and
the baseline, a bare statement there: a plain GROUP BY of the label table for counts per class, a width_bucket
GROUP BY over the range for histograms. The targets compare the statement with its baseline (the REST figure adds
the request's fixed cost: authentication, the catalog, the query's checks).
Targets (issue 21): objects per class close to its plain GROUP BY; a histogram of the area of every object within
2 x its width_bucket GROUP BY + 30 ms.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine, print_table, setup_django, start_server
from search_data import bench_schema, loaded_project

BINS = 20
# (case, query, statistic, baseline SQL over the tenant's tables with {range} for the histogram's bounds, target)
CASES = [
    (
        "objects per class, every row",
        "",
        {"kind": "count", "field": "label.class", "limit": 1000},
        "SELECT ontology_class_id, count(*) FROM datasets_label GROUP BY 1",
        "close to baseline",
    ),
    (
        "images per class, every row",
        "",
        {"kind": "count", "field": "label.class", "count": "images", "limit": 1000},
        "SELECT ontology_class_id, count(DISTINCT datarow_id) FROM datasets_label GROUP BY 1",
        "close to baseline",
    ),
    (
        "area histogram, every object, range computed",
        "",
        {"kind": "histogram", "field": "label.area", "bins": BINS},
        f"SELECT width_bucket(area, {{low}}, {{high}}, {BINS}), count(*) FROM datasets_label "
        "WHERE area IS NOT NULL GROUP BY 1",
        "2 x baseline + 30",
    ),
    (
        "area histogram, every object, range given",
        "",
        {"kind": "histogram", "field": "label.area", "bins": BINS, "range": "{range}"},
        f"SELECT width_bucket(area, {{low}}, {{high}}, {BINS}), count(*) FROM datasets_label "
        "WHERE area IS NOT NULL GROUP BY 1",
        "2 x baseline + 30",
    ),
    (
        "occluded values, every object",
        "",
        {"kind": "count", "field": "label.attributes.occluded"},
        "SELECT attributes -> 'occluded', count(*) FROM datasets_label GROUP BY 1",
        "",
    ),
    (
        "score histogram, every prediction",
        "",
        {"kind": "histogram", "field": "prediction.score", "bins": BINS, "range": [0, 1]},
        f"SELECT width_bucket(score, 0, 1, {BINS}), count(*) FROM predictions_prediction GROUP BY 1",
        "",
    ),
    (
        "objects per class, tags = 'night'",
        "tags = 'night'",
        {"kind": "count", "field": "label.class", "limit": 1000},
        "SELECT o.ontology_class_id, count(*) FROM datasets_label o JOIN datasets_datarow d ON d.id = o.datarow_id "
        "WHERE d.tags @> ARRAY['night'] GROUP BY 1",
        "",
    ),
    (
        "width histogram, every row",
        "",
        {"kind": "histogram", "field": "width", "bins": BINS},
        f"SELECT width_bucket(width, {{low}}, {{high}} + 1, {BINS}), count(*) FROM datasets_datarow "
        "WHERE width IS NOT NULL GROUP BY 1",
        "",
    ),
]


def _timed_sql(schema: str, sql: str, params: list | None = None, *, repeat: int) -> list[float]:
    from django.db import connections

    times = []
    with connections["reader"].cursor() as cursor:
        cursor.execute(f"SET search_path TO {schema}, public")
        cursor.execute(sql, params)  # warm
        for _ in range(repeat):
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return times


def _statement(schema: str, project_id: int, query_text: str, given: dict) -> tuple[str, list]:
    """The engine's statement for one statistic, as search.engines.postgres_statistics builds it on the reader."""
    from datasets.models import FieldCatalogEntry
    from search.engines.postgres_compiler import compile_filter
    from search.engines.postgres_statistics import count_statement, histogram_statement, project_objects_scope
    from search.engines.statistics import Statistic
    from search.ql import parse, validate
    from tenancy.context import tenant_scope

    options = {key: tuple(value) if key == "range" else value for key, value in given.items()}
    statistic = Statistic(name="s", **options)
    with tenant_scope(schema):
        catalog = dict(FieldCatalogEntry.objects.filter(project_id=project_id).values_list("path", "field_type"))
        query = validate(parse(query_text), catalog=catalog, text=query_text) if query_text else None
        condition = compile_filter(query, project_id=project_id, using="reader")
        scope = project_objects_scope(project_id, "reader") if query is None else None
        if statistic.kind == "count":
            statement = count_statement(statistic, condition, project_id, 10_000, scope=scope)
        else:
            statement = histogram_statement(statistic, condition, project_id, scope=scope)
    return statement.sql, statement.params


def _bounds(schema: str, table: str, column: str) -> tuple[float, float]:
    from django.db import connections

    with connections["reader"].cursor() as cursor:
        cursor.execute(f"SELECT min({column})::float8, max({column})::float8 FROM {schema}.{table}")
        return cursor.fetchone()


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_DEV_AUTH"] = "1"
    setup_django()
    from tenancy.dev_auth import issue_dev_token

    schema = bench_schema(args.rows)
    project = loaded_project(schema, args.rows)
    if project is None:
        raise SystemExit(f"no bench tenant {schema} with {args.rows:,} rows: run bench/search.py --rows {args.rows}")
    server, base = start_server(OUT / "bench-search-statistics.log")
    token = issue_dev_token(tenant=schema, user="bench", role="viewer", workspace="bench")
    url = f"{base}/api/v1/projects/{project.pk}/search/statistics"
    bounds = {
        "area": _bounds(schema, "datasets_label", "area"),
        "width": _bounds(schema, "datasets_datarow", "width"),
    }
    rows = []
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=300) as client:
            for case, query, statistic, baseline_sql, target in CASES:
                if args.only and args.only not in case:
                    continue
                low, high = bounds["width" if "width" in case else "area"]
                if statistic.get("range") == "{range}":
                    statistic = {**statistic, "range": [low, high]}
                body = {"query": query, "statistics": [statistic]}
                client.post(url, json=body).raise_for_status()  # warm: plans, caches, pooled connections
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    answer = client.post(url, json=body)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                (group,) = answer.json()["statistics"][0]["groups"]
                counted = sum(v["count"] for v in group.get("values", [])) + group.get("other", {}).get("count", 0)
                counted += sum(b["count"] for b in group.get("buckets", []))
                bare = statistics.median(
                    _timed_sql(schema, baseline_sql.format(low=low, high=high), repeat=args.repeat)
                )
                own = statistics.median(
                    _timed_sql(schema, *_statement(schema, project.pk, query, statistic), repeat=args.repeat)
                )
                p50 = statistics.median(times)
                met = {"close to baseline": own < 1.5 * bare + 30, "2 x baseline + 30": own < 2 * bare + 30}
                rows.append(
                    [
                        case,
                        f"{counted:,}",
                        f"{p50:,.0f}",
                        f"{p95(times):,.0f}",
                        f"{own:,.0f}",
                        f"{bare:,.0f}",
                        f"{target}: {'yes' if met[target] else 'NO'}" if target else "",
                    ]
                )
                print(f"{case}: done", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(30)
    print_table(
        f"Statistics through REST, {args.rows:,} datarows ({time.strftime('%Y-%m-%d')}, {machine()}); ms, warm, "
        f"{args.repeat} calls each",
        [
            "case",
            "counted",
            "REST p50",
            "p95",
            "statement p50",
            "bare SQL p50",
            "statement vs bare (close: < 1.5 x + 30)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
