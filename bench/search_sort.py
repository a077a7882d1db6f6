"""Sorted search pages on the PostgreSQL engine: each sort's first page and a page deep in the keyset walk.

    bench/search_sort.py --rows 100000

Imports --rows generated datarows (in-process, into a throwaway tenant), then for each sort, warm, prints p50 and
p95 of the first page (limit 50, no total: count=estimate) and of the page after 20 cursors, the plan's top
nodes, and the cost of the indexing hand-off on this engine (a no-op).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    OUT,
    ensure_generated,
    machine,
    postgres_settings,
    print_table,
    setup_django,
    throwaway_tenant,
)

SORTS = [
    ("id", None, None),
    ("-created_at", None, None),
    ("metadata.capture.time", None, None),
    ("-metadata.camera.iso", None, None),
    ("-prediction.score", "yolo@8.1", None),
    ("-prediction.score", "yolo@8.1", "vehicle/car"),
]
QUERIES = ["", "label(class = 'vehicle/car')"]
RUNS = 7


def _timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    setup_django()
    from datasets.models import Dataset
    from datasets.services.imports import ImportOptions, dataset_import_run
    from projects.models import Project
    from search.engines.base import SortSpec
    from search.indexing import datarows_changed
    from search.selectors import search_datarows

    manifest = ensure_generated(args.rows, 0) / "manifest.jsonl"
    print(machine())
    print(postgres_settings())
    with throwaway_tenant("bench_sort", files=OUT) as tenant:
        project = Project.objects.create(workspace_id="bench", name="sort", created_by="bench")
        dataset = Dataset.objects.create(project=project, name="sort", created_by="bench")
        seconds, _ = _timed(
            lambda: dataset_import_run(
                dataset=dataset,
                uri=str(manifest),
                options=ImportOptions(create_classes=True),
                source="import:bench",
                user="bench",
                progress=lambda counters, errors: None,
            )
        )
        print(f"imported {args.rows} rows in {seconds / 1000:.0f} s")
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        rows = []
        for text in QUERIES:
            for token, model, class_name in SORTS:
                sort = SortSpec.parse(token, model=model, class_name=class_name)

                def page(cursor=None, sort=sort, text=text):
                    return search_datarows(
                        project=project, query_text=text, sort=sort, cursor=cursor, count="estimate", limit=50
                    )

                page()  # warm
                first = sorted(_timed(page)[0] for _ in range(RUNS))
                cursor = None
                for _ in range(20):
                    cursor = page(cursor).next_cursor
                deep = sorted(_timed(lambda cursor=cursor, page=page: page(cursor))[0] for _ in range(RUNS))
                with CaptureQueriesContext(connection) as captured:
                    page(cursor)
                statement = next(q["sql"] for q in captured.captured_queries if "AS k FROM" in q["sql"])
                with connection.cursor() as db:
                    db.execute(f"EXPLAIN {statement}")
                    plan = " > ".join(line.strip().lstrip("-> ").split("  ")[0] for (line,) in db.fetchall()[:4])
                label = f"{token}" + (f" ({model}{', ' + class_name if class_name else ''})" if model else "")
                rows.append(
                    [
                        text or "(all)",
                        label,
                        f"{statistics.median(first):.0f}",
                        f"{first[-1]:.0f}",
                        f"{statistics.median(deep):.0f}",
                        f"{deep[-1]:.0f}",
                        plan[:120],
                    ]
                )
        print_table(
            f"Sorted first pages at {args.rows:,} rows, ms (p95 = max of {RUNS})",
            ["query", "sort", "first p50", "first p95", "page 21 p50", "page 21 p95", "plan (top)"],
            rows,
        )
        ids = range(1_000_000)
        seconds, _ = _timed(lambda: datarows_changed(project_id=project.pk, datarow_ids=ids))
        print(f"\nhand-off of 1,000,000 ids on the postgres engine: {seconds:.3f} ms")


if __name__ == "__main__":
    main()
