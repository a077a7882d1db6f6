"""Detection selections: what ranking a detector's images costs (the box strategies, the most-errors review queue
and the outcome disagreement of two evaluation runs), each its one SELECT, k = 1% of the images.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/detection_selection.py [--rows 20000] [--boxes 10]

In a throwaway tenant: `rows` datarows, 10 classes; a detector's prediction run with `boxes` random boxes per image
written through the job's own path (predictions.services.predictions_write), and a second version's boxes near
them (moved a little, a tenth relabelled), which box_disagreement compares with; two evaluation runs' ObjectMatch
rows as the evaluation job leaves them (`boxes` labels per image, each TP or FN at random, a TP's prediction row,
and a few FPs). Each statement runs once to warm the cache, then is timed; the indexes its plan uses are shown.
"""

import argparse
import random
import re
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, postgres_settings, print_table, setup_django, throwaway_tenant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="images")
    parser.add_argument("--boxes", type=int, default=10, help="boxes per image, per version; labels per image")
    parser.add_argument("--batch", type=int, default=256, help="datarows per write (the job's batch size)")
    parser.add_argument("--explain", action="store_true", help="print each statement's plan")
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction

    from datasets.models import Dataset, ModelVersion, OntologyClass
    from evaluations.models import EvaluationRun
    from evaluations.review import most_errors_sql, outcome_disagreement_sql
    from jobs.models import Job
    from mlops import tables
    from predictions.active_selection import Selection, selection_sql
    from predictions.detection_selection import BOX_STRATEGIES, box_selection_sql
    from predictions.models import PredictionRun
    from predictions.services import predictions_write
    from projects.models import Project

    print(machine())
    print(postgres_settings())
    table = []
    k = max(1, args.rows // 100)
    with throwaway_tenant("benchdetsel"):
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        dataset = Dataset.objects.create(project=project, name="bench", created_by="bench")
        classes = [OntologyClass.objects.create(project=project, name=f"class-{i}").pk for i in range(10)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {tables.DATAROW} (dataset_id, external_id, uri, media_type, metadata, tags, created_at,
                                              updated_at)
                SELECT %s, i::text, 's3://bench/' || i || '.jpg', 'image', '{{}}', '{{}}', now(), now()
                FROM generate_series(1, %s) i RETURNING id""",
                [dataset.pk, args.rows],
            )
            datarow_ids = sorted(row[0] for row in cursor.fetchall())

        def job() -> Job:
            return Job.objects.create(
                kind="bench",
                workspace_id="bench",
                owner_id="bench",
                status="succeeded",
                celery_task_id=str(uuid.uuid4()),
            )

        def run_of(version: str) -> PredictionRun:
            model_version = ModelVersion.objects.create(project=project, name="detector", version=version)
            return PredictionRun.objects.create(
                model_version=model_version,
                job=job(),
                dataset=dataset,
                top_k=args.boxes,
                batch_size=args.batch,
                created_by="bench",
            )

        rng = random.Random(0)
        runs = (run_of("1"), run_of("2"))
        started = time.perf_counter()
        for start in range(0, args.rows, args.batch):
            first, second = [], []
            for datarow_id in datarow_ids[start : start + args.batch]:
                boxes = [
                    (rng.randrange(10), rng.random(), (rng.uniform(0, 600), rng.uniform(0, 440), 40.0, 40.0))
                    for _ in range(args.boxes)
                ]
                moved = [
                    (
                        rng.randrange(10) if rng.random() < 0.1 else index,
                        rng.random(),
                        (x + rng.uniform(-8, 8), y + rng.uniform(-8, 8), w, h),
                    )
                    for index, _, (x, y, w, h) in boxes
                ]
                first.append((datarow_id, sorted(boxes, key=lambda box: -box[1])))
                second.append((datarow_id, sorted(moved, key=lambda box: -box[1])))
            for run, batch in zip(runs, (first, second), strict=True):
                with transaction.atomic():
                    predictions_write(prediction_run=run, batch=batch, class_ids=classes)
        print(f"wrote {2 * args.rows * args.boxes:,} boxes in {time.perf_counter() - started:.0f} s", file=sys.stderr)

        evaluation_runs = [
            EvaluationRun.objects.create(project=project, model_version=run.model_version, job=job(), created_by="b")
            for run in runs
        ]
        with connection.cursor() as cursor:
            for evaluation_run in evaluation_runs:
                values = {"run": evaluation_run.pk, "boxes": args.boxes, "class": classes[0], "dataset": dataset.pk}
                # Label i of image d is label id d * boxes + i in both runs: found (TP, twice) or missed (FN), then
                # one to three FPs per image.
                cursor.execute(
                    f"""
                    INSERT INTO {tables.OBJECT_MATCH} (run_id, datarow_id, side, outcome, label_id, prediction_id,
                                                      ontology_class_id, iou, score)
                    SELECT %(run)s, d.id, s.side, CASE WHEN l.found THEN 'tp' ELSE 'fn' END,
                           CASE WHEN s.side = 'label' THEN d.id * %(boxes)s + l.i END,
                           CASE WHEN s.side = 'prediction' THEN d.id * %(boxes)s + l.i END,
                           %(class)s, 0.7, 0.8
                    FROM {tables.DATAROW} d
                    CROSS JOIN LATERAL (SELECT i, random() < 0.7 AS found FROM generate_series(1, %(boxes)s) i) l
                    JOIN (VALUES ('label'), ('prediction')) s(side) ON s.side = 'label' OR l.found
                    WHERE d.dataset_id = %(dataset)s""",
                    values,
                )
                cursor.execute(
                    f"""
                    INSERT INTO {tables.OBJECT_MATCH} (run_id, datarow_id, side, outcome, prediction_id,
                                                      ontology_class_id, iou, score)
                    SELECT %(run)s, d.id, 'prediction', 'fp', -d.id * 10 - f.i, %(class)s, 0.0, 0.3
                    FROM {tables.DATAROW} d CROSS JOIN LATERAL generate_series(1, 1 + (d.id %% 3)) f(i)
                    WHERE d.dataset_id = %(dataset)s""",
                    values,
                )
            for table_name in (tables.PREDICTION, tables.OBJECT_MATCH):
                cursor.execute(f"ANALYZE {table_name}")

            statements = [
                (
                    f"select {strategy}",
                    box_selection_sql(
                        prediction_run_id=runs[0].pk,
                        selection=Selection(
                            strategy=strategy, k=k, score_floor=0.05, other_model_version_id=runs[1].model_version_id
                        ),
                    ),
                )
                for strategy in BOX_STRATEGIES
            ]
            statements.append(
                (
                    "select random (reference)",
                    selection_sql(prediction_run_id=runs[0].pk, selection=Selection(strategy="random", k=k, seed=1)),
                )
            )
            statements.append(
                ("review queue: most errors", most_errors_sql(evaluation_run_id=evaluation_runs[0].pk, k=k))
            )
            statements.append(
                (
                    "compare: a label found by one run only",
                    outcome_disagreement_sql(baseline_id=evaluation_runs[0].pk, candidate_id=evaluation_runs[1].pk),
                )
            )
            for label, (sql, params) in statements:
                cursor.execute(f"EXPLAIN {sql}", params)
                lines = [row[0] for row in cursor.fetchall()]
                if args.explain:
                    print(label, *lines, sep="\n", file=sys.stderr)
                plan = (
                    ", ".join(sorted(set(re.findall(r"Index (?:Only )?Scan (?:using|on) (\w+)", "\n".join(lines)))))
                    or "no index"
                )
                cursor.execute(sql, params)
                started = time.perf_counter()
                cursor.execute(sql, params)
                picked = len(cursor.fetchall())
                table.append([label, f"{time.perf_counter() - started:.2f}", f"{picked:,}", plan])
    print_table(
        f"Detection selections, {args.rows:,} images, {args.boxes} boxes per image per version, k = {k:,}",
        ["statement", "seconds", "rows", "indexes in the plan"],
        table,
    )


if __name__ == "__main__":
    main()
