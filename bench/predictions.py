"""Prediction runs: how fast they store top-k classifications, what selecting from them costs, and a whole run.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/predictions.py --rows 100000 --images 2000

In a throwaway tenant: a dataset of `rows` datarows (one INSERT ... SELECT), 10 classes, a model version and a
prediction run. The write path is the prediction job's own (predictions.services.predictions_write: one
statement per batch replacing the version's predictions, keeping the dataset's count), fed with synthetic
top-k batches so inference is not measured here; then the same again, replacing every prediction; then each
selection strategy's SELECT (k = 1% of rows) and the classification metrics. The indexing hand-off is a no-op
on the PostgreSQL engine, so "written" is also "searchable".

With --images N, a whole prediction run as the training worker runs it (in this process, on the CPU): N
64x64 PNG datarows, a small CNN trained on them for one epoch, then prediction_run_execute over the dataset:
reading, decoding, inference and writes together.
"""

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, postgres_settings, print_table, setup_django, throwaway_tenant


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256, help="datarows per write (the job's batch size)")
    parser.add_argument("--images", type=int, default=0, help="also time a whole prediction run on this many images")
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction

    from datasets.models import Dataset, ModelVersion, OntologyClass
    from jobs.models import Job
    from predictions.active_selection import STRATEGIES, Selection, selection_sql
    from predictions.metrics import classification_metrics
    from predictions.models import PredictionRun
    from predictions.services import predictions_write
    from projects.models import Project

    print(machine())
    print(postgres_settings())
    table = []
    with throwaway_tenant("benchpred"):
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        dataset = Dataset.objects.create(project=project, name="bench", created_by="bench")
        classes = [OntologyClass.objects.create(project=project, name=f"class-{i}").pk for i in range(10)]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO datasets_datarow (dataset_id, external_id, uri, media_type, metadata, tags, created_at,
                                              updated_at)
                SELECT %s, i::text, 's3://bench/' || i || '.jpg', 'image', '{}', '{}', now(), now()
                FROM generate_series(1, %s) i""",
                [dataset.pk, args.rows],
            )
            cursor.execute(
                """
                INSERT INTO datasets_label (datarow_id, ontology_class_id, kind, attributes, source, created_at,
                                            updated_at, updated_by)
                SELECT id, (%s::bigint[])[1 + id %% 10], 'classification', '{}', 'bench', now(), now(), 'bench'
                FROM datasets_datarow WHERE dataset_id = %s AND id %% 2 = 0""",
                [classes, dataset.pk],
            )
            cursor.execute("SELECT id FROM datasets_datarow WHERE dataset_id = %s ORDER BY id", [dataset.pk])
            datarow_ids = [row[0] for row in cursor.fetchall()]
        version = ModelVersion.objects.create(project=project, name="bench", version="1")
        job = Job.objects.create(
            kind="prediction-run",
            workspace_id="bench",
            owner_id="bench",
            status="succeeded",
            celery_task_id=str(uuid.uuid4()),
        )
        run = PredictionRun.objects.create(
            model_version=version, job=job, dataset=dataset, top_k=args.top_k, batch_size=args.batch, created_by="bench"
        )
        rng = random.Random(0)

        def batches():
            for start in range(0, len(datarow_ids), args.batch):
                batch = []
                for datarow_id in datarow_ids[start : start + args.batch]:
                    weights = sorted((rng.random() for _ in range(args.top_k)), reverse=True)
                    total = sum(weights) * 1.2
                    batch.append(
                        (
                            datarow_id,
                            [
                                (index, weight / total)
                                for index, weight in zip(rng.sample(range(10), args.top_k), weights)
                            ],
                        )
                    )
                yield batch

        for label in ("write (empty version)", "write (replacing every prediction)"):
            prepared = list(batches())
            started = time.perf_counter()
            written = 0
            for batch in prepared:
                with transaction.atomic():
                    added, _ = predictions_write(prediction_run=run, batch=batch, class_ids=classes)
                written += added
            seconds = time.perf_counter() - started
            table.append(
                [
                    label,
                    f"{seconds:.1f}",
                    f"{args.rows / seconds:,.0f} datarows/s",
                    f"{written / seconds:,.0f} predictions/s",
                ]
            )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE predictions_prediction")
            k = max(1, args.rows // 100)
            for strategy in STRATEGIES:
                sql, params = selection_sql(
                    prediction_run_id=run.pk, selection=Selection(strategy=strategy, k=k, seed=1)
                )
                started = time.perf_counter()
                cursor.execute(sql, params)
                picked = len(cursor.fetchall())
                seconds = time.perf_counter() - started
                table.append([f"select {strategy} (k={k:,})", f"{seconds:.2f}", f"{picked:,} picked", ""])
        started = time.perf_counter()
        metrics = classification_metrics(model_version=version)
        table.append(
            [
                "classification metrics",
                f"{time.perf_counter() - started:.2f}",
                f"{metrics['datarows']:,} datarows scored",
                "",
            ]
        )
        if args.images:
            table.append(whole_run(project, args.images))
    print_table(
        f"Prediction writes and selections, {args.rows:,} datarows, top-{args.top_k}, batches of {args.batch}",
        ["step", "seconds", "rate / result", ""],
        table,
    )


def whole_run(project, count: int) -> list:
    import io
    import tempfile

    import numpy as np
    from PIL import Image

    from datasets.models import DataRow, Dataset, Label, ModelVersion, OntologyClass
    from jobs.models import Job
    from mlops.storage import tenant_read_folder
    from predictions.models import PredictionRun
    from predictions.services import prediction_run_execute
    from slices.models import SliceMember, Split
    from slices.services import slice_create_from_ids
    from tenancy.principal import Principal
    from training.models import ModelDefinition
    from training.services import training_run_execute, training_run_start

    folder = Path(tempfile.mkdtemp(prefix="bench-images-", dir=tenant_read_folder()))  # the tenant may read it
    dataset = Dataset.objects.create(project=project, name="images", created_by="bench")
    colours = {name: OntologyClass.objects.create(project=project, name=name) for name in ("red", "blue")}
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        name = "red" if i % 2 else "blue"
        pixels = np.clip(
            np.array((220, 30, 30) if i % 2 else (30, 30, 220)) + rng.integers(-30, 30, (64, 64, 3)), 0, 255
        ).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        (folder / f"{i}.png").write_bytes(out.getvalue())
        rows.append((DataRow(dataset=dataset, external_id=str(i), uri=str(folder / f"{i}.png")), name))
    created = DataRow.objects.bulk_create(row for row, _ in rows)
    Label.objects.bulk_create(
        Label(datarow=row, ontology_class=colours[name], kind="classification", source="bench", updated_by="bench")
        for row, (_, name) in zip(created, rows)
    )
    sliced = slice_create_from_ids(
        project=project, name="images", created_by="bench", datarow_ids=[row.pk for row in created]
    )
    SliceMember.objects.filter(slice=sliced).update(split=Split.TRAIN)
    principal = Principal(
        user_id="bench", email="", tenant_schema="", workspace_id="bench", role="admin", database="main", expires_at=0
    )
    model = ModelDefinition.objects.create(
        project=project,
        name="trained",
        trainer="image-classifier",
        created_by="b",
        hyperparameters={"image_size": 64, "epochs": 1, "batch_size": 64, "device": "cpu"},
    )
    run = training_run_start(
        principal=principal, model=model, slice=sliced, train_splits=["train"], validation_splits=[]
    )
    Job.objects.filter(pk=run.job_id).update(status=Job.Status.RUNNING)
    training_run_execute(run=run, job=Job.objects.get(pk=run.job_id))
    version = ModelVersion.objects.get(training_run=run)
    job = Job.objects.create(
        kind="prediction-run", workspace_id="bench", owner_id="bench", status="running", celery_task_id="bench"
    )
    prediction_run = PredictionRun.objects.create(
        model_version=version, job=job, dataset=dataset, top_k=2, batch_size=64, created_by="bench"
    )
    started = time.perf_counter()
    prediction_run_execute(prediction_run=prediction_run, job=job)
    seconds = time.perf_counter() - started
    return [
        f"whole prediction run ({count:,} PNGs, small CNN at 64 px, CPU)",
        f"{seconds:.1f}",
        f"{prediction_run.datarow_count / seconds:,.0f} datarows/s",
        f"{prediction_run.prediction_count / seconds:,.0f} predictions/s",
    ]


if __name__ == "__main__":
    main()
