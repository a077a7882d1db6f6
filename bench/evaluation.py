"""Evaluation runs: a detector's boxes matched against the labels, start to stored matches, against pycocotools.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/evaluation.py --images 100000

In a throwaway tenant: `images` datarows with about 4 box labels each (5 classes, 5 % crowds, sizes across
COCO's area ranges) and 10 box predictions each (3 near labels, a fifth of those of another class, the rest
anywhere), written with COPY; a slice of every datarow. Then one evaluation run as the job runs it
(evaluations.services.evaluation_run_execute: read by chunks, match in numpy, COPY the matches, metrics, commit),
timed whole. Then on the first `--subset` images: pycocotools' COCOeval (evaluate, accumulate, summarize) beside
the numpy matcher on the same boxes, and whether their twelve numbers agree.
"""

import argparse
import contextlib
import io
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, postgres_settings, print_table, setup_django, throwaway_tenant

CLASSES = 5


def generate(images: int, seed: int = 0):
    """Boxes as numpy columns: (image index, class index, x, y, w, h, area, crowd) and (image, class, box, score)."""
    rng = np.random.default_rng(seed)
    per_image = rng.poisson(4, images)
    truth_image = np.repeat(np.arange(images), per_image)
    count = len(truth_image)
    size = np.exp(rng.uniform(np.log(8), np.log(300), (count, 2)))
    truth = np.c_[rng.uniform(0, 600, (count, 2)), size]
    truth_class = rng.integers(0, CLASSES, count)
    crowd = rng.random(count) < 0.05
    # Three detections near labels (of another class a fifth of the time), seven anywhere, per image.
    near = rng.integers(0, max(count, 1), images * 3) if count else np.zeros(0, int)
    near = near[np.isin(truth_image[near], np.arange(images))] if count else near
    jitter = rng.normal(0, 0.1, (len(near), 4)) * np.c_[truth[near, 2:], truth[near, 2:]]
    near_box = truth[near] + jitter
    near_box[:, 2:] = np.maximum(near_box[:, 2:], 1)
    near_class = np.where(rng.random(len(near)) < 0.2, rng.integers(0, CLASSES, len(near)), truth_class[near])
    anywhere = images * 10 - len(near)
    far_size = np.exp(rng.uniform(np.log(8), np.log(300), (anywhere, 2)))
    detection_image = np.r_[truth_image[near], rng.integers(0, images, anywhere)]
    detection = np.r_[near_box, np.c_[rng.uniform(0, 600, (anywhere, 2)), far_size]]
    detection_class = np.r_[near_class, rng.integers(0, CLASSES, anywhere)]
    score = np.round(np.r_[rng.uniform(0.3, 1, len(near)), rng.uniform(0, 0.7, anywhere)], 3)
    order = np.argsort(detection_image, kind="stable")
    return (
        (truth_image, truth_class, truth, truth[:, 2] * truth[:, 3], crowd),
        (detection_image[order], detection_class[order], detection[order], score[order]),
    )


def copy_rows(cursor, table: str, columns: str, lines) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        copy.write("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--subset", type=int, default=5_000, help="images compared with pycocotools")
    args = parser.parse_args()
    setup_django()

    from django.db import connection
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from datasets.models import Dataset, ModelVersion, OntologyClass
    from evaluations.matching import CocoEvaluation, Detections, GroundTruth
    from evaluations.models import EvaluationRun, ObjectMatch
    from evaluations.services import EVALUATION_RUN_JOB_KIND, evaluation_run_execute
    from jobs.models import Job
    from jobs.services import job_start
    from mlops import tables
    from projects.models import Project
    from slices.models import Slice

    print(machine())
    print(postgres_settings())
    (truth_image, truth_class, truth, area, crowd), (det_image, det_class, det, score) = generate(args.images)
    rows = []
    with throwaway_tenant("benchevals"):
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        dataset = Dataset.objects.create(project=project, name="bench", created_by="bench")
        classes = np.array(
            [OntologyClass.objects.create(project=project, name=f"class-{i}").pk for i in range(CLASSES)]
        )
        version = ModelVersion.objects.create(project=project, name="bench", version="1")
        members = Slice.objects.create(project=project, name="all", kind=Slice.Kind.IDS, created_by="bench")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO {tables.DATAROW} (dataset_id, external_id, uri, media_type, metadata, tags, created_at,
                                                  updated_at)
                    SELECT %s, i::text, 's3://bench/' || i || '.jpg', 'image', '{{}}', '{{}}', now(), now()
                    FROM generate_series(1, %s) i RETURNING id""",
                [dataset.pk, args.images],
            )
            datarow = np.sort(np.array([row[0] for row in cursor.fetchall()]))
            raw = cursor.cursor
            copy_rows(
                raw,
                tables.LABEL,
                "datarow_id, ontology_class_id, kind, x, y, w, h, area, attributes, source, created_at, updated_at, "
                "updated_by",
                (
                    f"{d}\t{c}\tbox\t{x!r}\t{y!r}\t{w!r}\t{h!r}\t{a!r}\t{{\"iscrowd\": {int(k)}}}\tbench\tnow\tnow\tbench\n"
                    for d, c, (x, y, w, h), a, k in zip(
                        datarow[truth_image].tolist(), classes[truth_class].tolist(), truth.tolist(), area.tolist(),
                        crowd.tolist(), strict=True,
                    )
                ),
            )  # fmt: skip
            copy_rows(
                raw,
                tables.PREDICTION,
                "datarow_id, model_version_id, ontology_class_id, kind, x, y, w, h, area, score, attributes, created_at",
                (
                    f"{d}\t{version.pk}\t{c}\tbox\t{x!r}\t{y!r}\t{w!r}\t{h!r}\t{w * h!r}\t{s!r}\t{{}}\tnow\n"
                    for d, c, (x, y, w, h), s in zip(
                        datarow[det_image].tolist(), classes[det_class].tolist(), det.tolist(), score.tolist(), strict=True
                    )
                ),
            )  # fmt: skip
            cursor.execute(
                f"""INSERT INTO {tables.SLICE_MEMBER} (slice_id, datarow_id, split)
                    SELECT %s, id, 0 FROM {tables.DATAROW} WHERE dataset_id = %s""",
                [members.pk, dataset.pk],
            )
            cursor.execute(f"ANALYZE {tables.LABEL}; ANALYZE {tables.PREDICTION}; ANALYZE {tables.SLICE_MEMBER}")
        rows.append(["generate (COPY)", f"{time.perf_counter() - started:.1f}", f"{len(truth):,} labels"])
        rows[-1].append(f"{len(det):,} predictions")

        job = Job.objects.create(
            kind=EVALUATION_RUN_JOB_KIND, workspace_id="bench", owner_id="bench", celery_task_id=str(uuid.uuid4())
        )
        run = EvaluationRun.objects.create(
            project=project, model_version=version, job=job, slice=members, created_by="bench"
        )
        job = job_start(job_id=job.pk)
        started = time.perf_counter()
        run = evaluation_run_execute(run=run, job=job)
        seconds = time.perf_counter() - started
        stored = ObjectMatch.objects.filter(run=run).count()
        rows.append([f"evaluation run, {args.images:,} images", f"{seconds:.1f}", f"{stored:,} matches stored"])
        rows[-1].append(f"mAP {run.metrics['map']:.4f}")

        # The subset: the same boxes in memory, pycocotools beside the numpy matcher.
        subset = min(args.subset, args.images)
        t, d = truth_image < subset, det_image < subset
        truths = GroundTruth(truth_image[t], truth_class[t], truth[t], area[t], crowd[t], np.arange(1, t.sum() + 1))
        detections = Detections(det_image[d], det_class[d], det[d], score[d], np.arange(1, d.sum() + 1))
        started = time.perf_counter()
        mine = CocoEvaluation()
        mine.add(truths, detections)
        summary = mine.summary({c: str(c) for c in range(CLASSES)})
        numpy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ground_truth = COCO()
            ground_truth.dataset = {
                "images": [{"id": int(i)} for i in range(subset)],
                "categories": [{"id": c} for c in range(CLASSES)],
                "annotations": [
                    {"id": int(n), "image_id": int(i), "category_id": int(c), "bbox": b, "area": a, "iscrowd": int(k)}
                    for n, i, c, b, a, k in zip(
                        truths.id, truths.image, truths.class_id, truths.box.tolist(), truths.area, truths.crowd,
                        strict=True,
                    )
                ],
            }  # fmt: skip
            ground_truth.createIndex()
            results = ground_truth.loadRes(
                [
                    {"image_id": int(i), "category_id": int(c), "bbox": b, "score": float(s)}
                    for i, c, b, s in zip(
                        detections.image, detections.class_id, detections.box.tolist(), detections.score, strict=True
                    )
                ]
            )
            evaluation = COCOeval(ground_truth, results, "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        coco_seconds = time.perf_counter() - started
        keys = ["map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100"]
        keys += ["ar_small", "ar_medium", "ar_large"]
        difference = max(
            abs((summary[k] if summary[k] is not None else -1) - v) for k, v in zip(keys, evaluation.stats, strict=True)
        )
        rows.append([f"pycocotools COCOeval, {subset:,} images", f"{coco_seconds:.1f}", "", ""])
        rows.append(
            [f"numpy matcher, same {subset:,} images", f"{numpy_seconds:.2f}", f"{coco_seconds / numpy_seconds:.0f}x"]
        )
        rows[-1].append(f"max |difference| of the 12 numbers: {difference:.1e}")
    print_table(f"Evaluation run ({args.images:,} images, {CLASSES} classes)", ["step", "seconds", "", ""], rows)


if __name__ == "__main__":
    main()
