"""Evaluation runs: a detector's box predictions matched against a slice's box labels, as a Job.

The job streams the slice's members from SQL in chunks of whole images (evaluations.matching matches them in numpy)
and writes each object's outcome with COPY, all in one transaction on its own connection: a failed or cancelled run
leaves no match behind, while its progress (on Django's connection) shows as it goes.
"""

import json
import math
from collections.abc import Iterator

import numpy as np
import psycopg
from django.db import connections, transaction

from datasets.models import ModelVersion
from evaluations.matching import CocoEvaluation, Detections, GroundTruth, Matches
from evaluations.models import EvaluationRun, ObjectMatch
from jobs.models import Job
from jobs.services import job_create, job_report_progress
from mlops import tables
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError
from predictions.services import MAX_BOXES_PER_IMAGE, _stored_members_slice
from search.indexing import datarows_changed
from slices.models import Slice, SliceMember, Split
from tenancy.principal import Principal

EVALUATION_RUN_JOB_KIND = "evaluation-run"
# Images read, matched and written at once: about 4 MB of boxes and 20 MB of matching state at 10 boxes per image.
EVALUATION_CHUNK_IMAGES = 10_000
MATCH_COLUMNS = (
    "run_id, datarow_id, side, outcome, label_id, prediction_id, ontology_class_id, predicted_class_id, iou, score"
)


def evaluation_run_start(
    *,
    principal: Principal,
    model_version: ModelVersion,
    slice: Slice,
    splits: tuple[int, ...] = (),
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> EvaluationRun:
    """Check the request, then queue the run: every bad field is named now rather than failing the job later."""
    _stored_members_slice(slice, project_id=model_version.project_id, field="slice_id")
    if not 0 < iou_threshold <= 1:
        raise ApplicationError(
            "iou_threshold must be more than 0 and at most 1.", {"fields": {"iou_threshold": ["In (0, 1]."]}}
        )
    if not 1 <= max_detections <= MAX_BOXES_PER_IMAGE:
        raise ApplicationError(
            f"max_detections must be between 1 and {MAX_BOXES_PER_IMAGE}.",
            {"fields": {"max_detections": [f"At most {MAX_BOXES_PER_IMAGE}."]}},
        )
    members = SliceMember.objects.filter(slice=slice)
    if splits:
        members = members.filter(split__in=splits)
    if not members.exists():
        where = f" in {', '.join(Split(value).label for value in splits)}" if splits else ""
        raise ApplicationError(
            f"Slice '{slice.name}' has no members{where}: nothing to evaluate.",
            {"fields": {"splits" if splits else "slice_id": ["No members."]}},
        )
    if not model_version.predictions.filter(kind="box", datarow__in=members.values("datarow_id")).exists():
        raise ApplicationError(
            f"Model version {model_version} has no box predictions on the slice's members: predict them first.",
            {"fields": {"model_version_id": ["No box predictions in scope."]}},
        )
    with transaction.atomic(using=WRITER):
        job = job_create(principal=principal, kind=EVALUATION_RUN_JOB_KIND)
        run = EvaluationRun.objects.create(
            project_id=model_version.project_id,
            model_version=model_version,
            job=job,
            slice=slice,
            splits=list(splits),
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            created_by=principal.user_id,
        )
        Job.objects.filter(pk=job.pk).update(params={"evaluation_run_id": run.pk})
    return run


def _binary_rows(cursor: psycopg.Cursor, sql: str, params: list, fields: list[tuple[str, str]]) -> np.ndarray:
    """The rows of `sql` (its columns 8-byte and never null) as a numpy record array, through binary COPY: each row is
    then fixed-size (a field count, and a length before each value), so numpy reads it without a Python loop."""
    dtype = np.dtype(
        [("count", ">i2")] + [item for name, kind in fields for item in ((f"{name}_size", ">i4"), (name, kind))]
    )
    with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
        data = b"".join(bytes(block) for block in copy)
    # A 19-byte header (signature, flags, extension length) and a 2-byte trailer.
    return np.frombuffer(data[19:-2], dtype=dtype)


BOX_FIELDS = [("image", ">i8"), ("class_id", ">i8"), ("x", ">f8"), ("y", ">f8"), ("w", ">f8"), ("h", ">f8")]


def _chunk(cursor: psycopg.Cursor, run: EvaluationRun, datarow_ids: list[int]) -> tuple[GroundTruth, Detections]:
    truths = _binary_rows(
        cursor,
        f"""SELECT l.datarow_id, l.ontology_class_id, coalesce(l.x, 0), coalesce(l.y, 0), coalesce(l.w, 0),
                   coalesce(l.h, 0), coalesce(l.area, l.w * l.h, 0),
                   (CASE WHEN l.attributes->>'iscrowd' IN ('1', 'true') THEN 1 ELSE 0 END)::int8, l.id
            FROM {tables.LABEL} l JOIN {tables.ONTOLOGY_CLASS} o ON o.id = l.ontology_class_id
            WHERE l.datarow_id = ANY(%s) AND l.kind = 'box' AND o.project_id = %s""",
        [datarow_ids, run.project_id],
        [*BOX_FIELDS, ("area", ">f8"), ("crowd", ">i8"), ("id", ">i8")],
    )
    detections = _binary_rows(
        cursor,
        f"""SELECT p.datarow_id, p.ontology_class_id, coalesce(p.x, 0), coalesce(p.y, 0), coalesce(p.w, 0),
                   coalesce(p.h, 0), p.score, p.id
            FROM {tables.PREDICTION} p
            WHERE p.model_version_id = %s AND p.datarow_id = ANY(%s) AND p.kind = 'box'""",
        [run.model_version_id, datarow_ids],
        [*BOX_FIELDS, ("score", ">f8"), ("id", ">i8")],
    )
    return (
        GroundTruth(
            image=truths["image"].astype(np.int64),
            class_id=truths["class_id"].astype(np.int64),
            box=np.stack([truths[c].astype(np.float64) for c in "xywh"], axis=1).reshape(-1, 4),
            area=truths["area"].astype(np.float64),
            crowd=truths["crowd"] != 0,
            id=truths["id"].astype(np.int64),
        ),
        Detections(
            image=detections["image"].astype(np.int64),
            class_id=detections["class_id"].astype(np.int64),
            box=np.stack([detections[c].astype(np.float64) for c in "xywh"], axis=1).reshape(-1, 4),
            score=detections["score"].astype(np.float64),
            id=detections["id"].astype(np.int64),
        ),
    )


def _member_chunks(cursor: psycopg.Cursor, run: EvaluationRun) -> Iterator[list[int]]:
    """The run's images (the slice's members in its splits), in datarow order, by keyset."""
    split_filter = " AND split = ANY(%s)" if run.splits else ""
    after = 0
    while True:
        cursor.execute(
            f"""SELECT datarow_id FROM {tables.SLICE_MEMBER} WHERE slice_id = %s AND datarow_id > %s{split_filter}
                ORDER BY datarow_id LIMIT %s""",
            [run.slice_id, after, *([run.splits] if run.splits else []), EVALUATION_CHUNK_IMAGES],
        )
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return
        yield ids
        after = ids[-1]


def _number(value: float) -> str:
    return "\\N" if math.isnan(value) else repr(value)


def _id(value: int) -> str:
    return "\\N" if value < 0 else str(value)


def _match_lines(run_id: int, matches: Matches) -> str:
    """The chunk's ObjectMatch rows as COPY text."""
    labels = (
        f"{run_id}\t{image}\tlabel\t{outcome}\t{label}\t{_id(other)}\t{class_id}\t{_id(other_class)}\t{_number(iou)}\t\\N\n"
        for image, outcome, label, other, class_id, other_class, iou in zip(
            matches.label_image.tolist(),
            matches.label_outcome.tolist(),
            matches.label_id.tolist(),
            matches.label_other_id.tolist(),
            matches.label_class.tolist(),
            matches.label_other_class.tolist(),
            matches.label_iou.tolist(),
            strict=True,
        )
    )
    predictions = (
        f"{run_id}\t{image}\tprediction\t{outcome}\t{_id(other)}\t{prediction}\t{class_id}\t{class_id}\t{_number(iou)}\t{score!r}\n"
        for image, outcome, prediction, other, class_id, iou, score in zip(
            matches.prediction_image.tolist(),
            matches.prediction_outcome.tolist(),
            matches.prediction_id.tolist(),
            matches.prediction_other_id.tolist(),
            matches.prediction_class.tolist(),
            matches.prediction_iou.tolist(),
            matches.prediction_score.tolist(),
            strict=True,
        )
    )
    return "".join(labels) + "".join(predictions)


def _open_connection() -> psycopg.Connection:
    """A writer connection of its own on the current tenant's schema, reading one snapshot throughout."""
    django_connection = connections[WRITER]
    conn = psycopg.connect(**django_connection.get_connection_params())
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.execute("SELECT set_config('search_path', %s, true)", [f"{django_connection.schema_name},public"])
    return conn


def evaluation_run_execute(*, run: EvaluationRun, job: Job) -> EvaluationRun:
    """Match the slice's images chunk by chunk, write their matches, then the metrics, in one transaction."""
    evaluation = CocoEvaluation(iou_threshold=run.iou_threshold, max_detections=run.max_detections)
    members = SliceMember.objects.using(WRITER).filter(slice_id=run.slice_id)
    total = (members.filter(split__in=run.splits) if run.splits else members).count()
    counts = {"images": 0, "ground_truth": 0, "predictions": 0, "tp": 0, "fp": 0, "fn": 0}
    matched_datarows: list[np.ndarray] = []
    match_table = ObjectMatch._meta.db_table
    with _open_connection() as conn, conn.cursor() as cursor, conn.cursor() as reader:
        for datarow_ids in _member_chunks(reader, run):
            truths, detections = _chunk(cursor, run, datarow_ids)
            matches = evaluation.add(truths, detections)
            with cursor.copy(f"COPY {match_table} ({MATCH_COLUMNS}) FROM STDIN") as copy:
                copy.write(_match_lines(run.pk, matches))
            counts["images"] += len(datarow_ids)
            counts["ground_truth"] += len(truths.id)
            counts["predictions"] += len(detections.id)
            counts["tp"] += int((matches.prediction_outcome == "tp").sum())
            counts["fp"] += int((matches.prediction_outcome == "fp").sum())
            counts["fn"] += int((matches.label_outcome == "fn").sum())
            matched_datarows.append(np.unique(np.r_[matches.label_image, matches.prediction_image]))
            job_report_progress(
                job=job,
                done=counts["images"],
                total=total,
                counters=counts,
                message=f"{counts['images']} of {total} images matched",
            )
        cursor.execute(f"SELECT id, name FROM {tables.ONTOLOGY_CLASS} WHERE project_id = %s", [run.project_id])
        metrics = {**evaluation.summary(dict(cursor.fetchall())), **{key: counts[key] for key in ("tp", "fp", "fn")}}
        cursor.execute(
            f"""UPDATE {EvaluationRun._meta.db_table} SET metrics = %s, image_count = %s, ground_truth_count = %s,
                prediction_count = %s WHERE id = %s""",
            [json.dumps(metrics), counts["images"], counts["ground_truth"], counts["predictions"], run.pk],
        )
    # Committed: the search engine's copy of these datarows gains their matches (nothing to do on PostgreSQL).
    datarow_ids = np.unique(np.concatenate(matched_datarows)) if matched_datarows else np.zeros(0, int)
    datarows_changed(project_id=run.project_id, datarow_ids=datarow_ids.tolist())
    run.refresh_from_db(using=WRITER)
    job_report_progress(job=job, done=total, total=total, counters=counts)
    return run
