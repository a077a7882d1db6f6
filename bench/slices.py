"""Slice freeze time at 1M members, and what follows a freeze (split, combine, IN SLICE, a member page).

    .venv/bin/python -m devstack run -- .venv/bin/python bench/slices.py --rows 1000000

1. A throwaway tenant with one dataset of --rows datarows in the shape bench/generate.py writes (tags,
   metadata.weather, width/height) and one classification label each (a Zipf-like class), written with
   INSERT ... SELECT: loading through the import service (bench/import.py) takes minutes per million rows
   here and is not what this measures. ANALYZE afterwards, as autovacuum would.
2. Each measured step is the service a request or job runs, timed from the call to its commit:
   slice_freeze_members (the freeze job's work: one INSERT ... SELECT from the compiled query) for queries
   of several sizes, up to every row; slice_split (stratified, one UPDATE ... FROM); slice_combine; an
   IN SLICE count and the first member page.
"""

import argparse
import sys
import time

from common import machine, postgres_settings, print_table, setup_django, throwaway_tenant

FREEZE_QUERIES = [
    ("every row (width >= 0)", "width >= 0"),
    ("tag, ~50 %", "tags = 'day'"),
    ("metadata, ~33 %", "metadata.weather IN ('rain', 'fog')"),
    ("label class, ~9 %", "label(class = 'vehicle/car')"),
]
CLASSES = [
    "person",
    "vehicle/car",
    "vehicle/truck",
    "animal/dog",
    "animal/cat",
    "object/cup",
    "object/chair",
    "outdoor/bench",
]


def _load(project, rows: int) -> None:
    from django.db import connection

    from datasets.models import Dataset, FieldCatalogEntry, OntologyClass

    dataset = Dataset.objects.create(project=project, name="bench", created_by="bench")
    classes = [OntologyClass.objects.create(project=project, name=name).pk for name in CLASSES]
    FieldCatalogEntry.objects.create(project=project, path="weather", field_type="string")
    with connection.cursor() as cursor:
        # Deterministic pseudo-random columns from the row number (hashes, not random(), so reruns match).
        cursor.execute(
            """
            INSERT INTO datasets_datarow (dataset_id, external_id, uri, media_type, width, height, metadata, tags,
                                          created_at, updated_at)
            SELECT %(dataset)s, 'img-' || n, 's3://bench/' || n || '.jpg', 'image', 640, 480,
                   jsonb_build_object('weather', (ARRAY['sunny', 'cloudy', 'rain', 'fog', 'snow', 'storm'])
                                                  [1 + abs(hashint4(n)) %% 6]),
                   CASE WHEN n %% 2 = 0 THEN ARRAY['day'] ELSE ARRAY['night', 'urban'] END, now(), now()
            FROM generate_series(1, %(rows)s) AS n""",
            {"dataset": dataset.pk, "rows": rows},
        )
        # Class rank r with weight ~ 1/(r+1): the first class is the most common, as in generate.py.
        cursor.execute(
            """
            INSERT INTO datasets_label (datarow_id, ontology_class_id, kind, attributes, source, created_at,
                                        updated_at, updated_by)
            SELECT d.id, (%(classes)s::bigint[])[1 + floor(least(0.999999, (abs(hashint8(d.id)) %% 1000000) / 1e6)
                                                           ^ 2 * %(count)s)::int],
                   'classification', '{}', 'bench', now(), now(), 'bench'
            FROM datasets_datarow AS d WHERE d.dataset_id = %(dataset)s""",
            {"classes": classes, "count": len(classes), "dataset": dataset.pk},
        )
        cursor.execute(
            "UPDATE datasets_dataset SET datarow_count = %s, label_count = %s WHERE id = %s", [rows, rows, dataset.pk]
        )
        cursor.execute("ANALYZE datasets_datarow; ANALYZE datasets_label")


def _freeze_plan(project, query: str) -> str:
    """EXPLAIN ANALYZE of a freeze's INSERT ... SELECT, rolled back."""
    from django.db import connection, transaction

    from search.engines.postgres_compiler import compile_filter
    from search.queries import project_query_validate
    from slices.models import Slice

    condition = compile_filter(
        project_query_validate(project_id=project.pk, query_text=query, using="default"), project_id=project.pk
    )
    with transaction.atomic():
        pending = Slice.objects.create(
            project=project, name="explained", kind=Slice.Kind.FROZEN, query=query, created_by="bench"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) INSERT INTO slices_slicemember (slice_id, datarow_id) "
                f"SELECT %s, d.id FROM datasets_datarow AS d WHERE {condition.sql}",
                [pending.pk, *condition.params],
            )
            plan = "\n".join(line for (line,) in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from projects.models import Project
    from search.engines.postgres_compiler import compile_filter
    from search.queries import project_query_validate
    from slices.models import Slice
    from slices.selectors import slice_member_page
    from slices.services import slice_combine, slice_freeze_members, slice_split

    table = []
    with throwaway_tenant("bench_slices"):
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        _, loaded = _timed(lambda: _load(project, args.rows))
        print(f"loaded {args.rows:,} datarows and labels in {loaded:.0f}s", file=sys.stderr)
        frozen = {}
        for number, (what, query) in enumerate(FREEZE_QUERIES):
            pending = Slice.objects.create(
                project=project, name=f"freeze {number}", kind=Slice.Kind.FROZEN, query=query, created_by="bench"
            )
            frozen[what], seconds = _timed(lambda: slice_freeze_members(slice=pending))
            members = frozen[what].member_count
            table.append([f"freeze: {what}", f"{members:,}", f"{seconds:.2f}", f"{members / seconds:,.0f}"])
        everything = frozen[FREEZE_QUERIES[0][0]]
        plan = _freeze_plan(project, FREEZE_QUERIES[0][1])
        fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
        for stratified in (False, True):
            _, seconds = _timed(
                lambda: slice_split(slice=everything, seed=7, fractions=fractions, stratified=stratified)
            )
            table.append(
                [
                    f"split 80/10/10{', stratified by class' if stratified else ''}",
                    f"{everything.member_count:,}",
                    f"{seconds:.2f}",
                    f"{everything.member_count / seconds:,.0f}",
                ]
            )
        for operation in ("union", "intersection", "difference"):
            operands = [frozen[FREEZE_QUERIES[1][0]], frozen[FREEZE_QUERIES[2][0]]]
            combined, seconds = _timed(
                lambda: slice_combine(
                    project=project, name=operation, created_by="bench", operation=operation, slices=operands
                )
            )
            table.append(
                [
                    f"combine: tag {operation} metadata",
                    f"{combined.member_count:,}",
                    f"{seconds:.2f}",
                    f"{combined.member_count / seconds:,.0f}",
                ]
            )
        text = f"IN SLICE '{everything.name}' AND tags = 'day'"
        condition = compile_filter(
            project_query_validate(project_id=project.pk, query_text=text, using="default"), project_id=project.pk
        )

        def count_matches() -> int:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM datasets_datarow AS d WHERE {condition.sql}", condition.params)
                return cursor.fetchone()[0]

        count, seconds = _timed(count_matches)
        table.append([f"count: {text}", f"{count:,}", f"{seconds:.2f}", "-"])
        page, seconds = _timed(lambda: slice_member_page(slice=everything, after_id=None, limit=100, split="test"))
        table.append(["first page of 100 test members", f"{len(page.results)}", f"{seconds:.3f}", "-"])
        settings = postgres_settings()

    print_table(
        f"Slices over {args.rows:,} datarows ({time.strftime('%Y-%m-%d')}, {machine()})",
        ["step", "members", "seconds", "members/s"],
        table,
    )
    print(f"\nPlan of the freeze of every row ({FREEZE_QUERIES[0][1]!r}):\n{plan}")
    print(f"\nPostgreSQL: {settings}")


if __name__ == "__main__":
    main()
