"""Detection: how fast the detectors train on the CPU, and how fast a prediction run stores their boxes.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/detection.py [--images 64] [--rows 20000]

Training: the real trainers (trainers, no Django) on demo.shapes images (64 to 128 px, one to three boxes
each) written to a temporary folder, one process with --threads torch threads, augmentation on; images/s counts
training steps only, of the last epoch (the first warms up). The same images through the image classifier (each
image's class being its first box's) are the same-run reference: what this machine gives a classifier now.

Writes: in a throwaway tenant, `rows` datarows and a prediction run; synthetic batches of `boxes` box predictions
per datarow through the prediction job's own write path (predictions.services.predictions_write: one statement per
batch replacing the version's predictions, keeping the dataset's count), so inference is not measured; beside it,
top-5 classifications of another version through the same function, the reference. On the PostgreSQL engine the
indexing hand-off does nothing, so a written box is searchable when its batch commits.
"""

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, postgres_settings, print_table, setup_django, throwaway_tenant

sys.path.insert(0, str(REPO))


def training_rows(images: int, epochs: int, threads: int) -> list[list]:
    import torch

    from demo.shapes import CLASSES, write_shapes
    from trainers.interface import Example
    from trainers.opener import open_uri
    from trainers.registry import get_trainer

    torch.set_num_threads(threads)
    cases = [
        ("detector-fcos", {"min_size": 64, "max_size": 128}),
        ("detector-fcos", {"min_size": 128, "max_size": 256}),
        ("detector-faster-rcnn", {"min_size": 64, "max_size": 128}),
        ("detector-faster-rcnn", {"min_size": 128, "max_size": 256}),
        ("image-classifier", {"architecture": "small-cnn", "image_size": 64}),
        ("image-classifier", {"architecture": "resnet18", "image_size": 64}),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as folder:
        shapes = write_shapes(Path(folder), images, seed=0)
        examples = [
            Example(
                key=number,
                uri=str(Path(folder) / image.file_name),
                target=image.boxes[0][0] if image.boxes else 0,
                boxes=image.boxes,
            )
            for number, image in enumerate(shapes)
        ]
        for name, config in cases:
            trainer = get_trainer(name)
            valid = trainer.validate_config({**config, "epochs": epochs, "batch_size": 8, "device": "cpu"})
            started = time.perf_counter()
            result = trainer.train(
                train=examples,
                validation=[],
                classes=list(CLASSES),
                config=valid,
                opener=open_uri,
                output_dir=Path(folder) / "run",
                on_step=lambda progress: None,
                on_epoch=lambda metrics: None,
                log=lambda line: None,
            )
            size = config.get("min_size", config.get("image_size"))
            label = name if name != "image-classifier" else f"{name} ({config['architecture']}, reference)"
            rows.append(
                [label, size, 8, f"{result.epochs[-1].images_per_second:.1f}", f"{time.perf_counter() - started:.0f}"]
            )
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def write_rows(rows: int, boxes: int, batch_rows: int) -> list[list]:
    from django.db import connection, transaction

    from datasets.models import Dataset, ModelVersion, OntologyClass
    from jobs.models import Job
    from mlops import tables
    from predictions.models import PredictionRun
    from predictions.services import predictions_write
    from projects.models import Project

    table = []
    with throwaway_tenant("benchdet"):
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
                [dataset.pk, rows],
            )
            datarow_ids = sorted(row[0] for row in cursor.fetchall())
        rng = random.Random(0)

        def run_of(name: str, top_k: int) -> PredictionRun:
            version = ModelVersion.objects.create(project=project, name=name, version="1")
            job = Job.objects.create(
                kind="prediction-run",
                workspace_id="bench",
                owner_id="bench",
                status="succeeded",
                celery_task_id=str(uuid.uuid4()),
            )
            return PredictionRun.objects.create(
                model_version=version, job=job, dataset=dataset, top_k=top_k, batch_size=batch_rows, created_by="bench"
            )

        def box_batches():
            for start in range(0, rows, batch_rows):
                yield [
                    (
                        datarow_id,
                        sorted(
                            (
                                (
                                    rng.randrange(10),
                                    rng.random(),
                                    (
                                        rng.uniform(0, 600),
                                        rng.uniform(0, 440),
                                        rng.uniform(4, 200),
                                        rng.uniform(4, 200),
                                    ),
                                )
                                for _ in range(boxes)
                            ),
                            key=lambda box: -box[1],
                        ),
                    )
                    for datarow_id in datarow_ids[start : start + batch_rows]
                ]

        def classification_batches():
            for start in range(0, rows, batch_rows):
                yield [
                    (datarow_id, [(index, rng.random() / 5) for index in rng.sample(range(10), 5)])
                    for datarow_id in datarow_ids[start : start + batch_rows]
                ]

        detector, classifier = run_of("detector", boxes), run_of("classifier", 5)
        for label, run, batches in (
            (f"boxes, {boxes} per datarow, empty version", detector, box_batches),
            (f"boxes, {boxes} per datarow, replacing every box", detector, box_batches),
            ("top-5 classifications, empty version (reference)", classifier, classification_batches),
        ):
            prepared = list(batches())
            started = time.perf_counter()
            written = 0
            for batch in prepared:
                with transaction.atomic():
                    added, _ = predictions_write(prediction_run=run, batch=batch, class_ids=classes)
                written += added
            seconds = time.perf_counter() - started
            table.append([label, f"{seconds:.1f}", f"{rows / seconds:,.0f}", f"{written / seconds:,.0f}"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="shape images to train on")
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is timed")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 on a shared machine: bench/RESULTS.md)"
    )
    parser.add_argument("--rows", type=int, default=20_000, help="datarows whose predictions are written")
    parser.add_argument("--boxes", type=int, default=10, help="box predictions per datarow")
    parser.add_argument("--batch", type=int, default=256, help="datarows per write (the job's batch size)")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    print(machine())
    if not args.skip_training:
        import torch

        print_table(
            f"Training on the CPU, {args.images} shapes (64-128 px), {args.epochs} epochs, last one timed; "
            f"torch {torch.__version__}, {args.threads} thread(s)",
            ["trainer", "px", "batch", "images/s", "seconds in all"],
            training_rows(args.images, args.epochs, args.threads),
        )
    setup_django()
    print(postgres_settings())
    print_table(
        f"Prediction writes (predictions_write), {args.rows:,} datarows, batches of {args.batch}",
        ["predictions", "seconds", "datarows/s", "predictions/s"],
        write_rows(args.rows, args.boxes, args.batch),
    )


if __name__ == "__main__":
    main()
