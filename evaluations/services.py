"""Evaluation runs: a detector's box predictions matched against a slice's box labels, as a Job.

The job streams the slice's members from SQL in chunks of whole images (evaluations.matching matches them in numpy)
and writes each object's outcome with COPY, all in one transaction on its own connection: a failed or cancelled run
leaves no match behind, while its progress (on Django's connection) shows as it goes.
"""

import json
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
from mlops.bulk_writes import skip_row_by_row_foreign_key_checks
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError
from predictions.services import MAX_BOXES_PER_IMAGE
from search.indexing import datarows_changed
from slices.models import Slice, SliceMember, Split
from slices.selectors import slice_stored_members_require
from tenancy.principal import Principal

EVALUATION_RUN_JOB_KIND = "evaluation-run"
# Images read, matched and written at once: about 4 MB of boxes and 20 MB of matching state at 10 boxes per image.
EVALUATION_CHUNK_IMAGES = 10_000
# The precision curves keep ~80 bytes per prediction until the end (evaluations.matching): a run stops past this many
# (~1.6 GB) rather than exhaust its worker's memory.
EVALUATION_MAX_PREDICTIONS = 20_000_000
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
    slice_stored_members_require(slice, project_id=model_version.project_id, field="slice_id")
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


def _packed_rows(cursor: psycopg.Cursor, sql: str, params: list, fields: list[tuple[str, str]]) -> np.ndarray:
    """The rows of `sql` as a numpy record array. Its one column is each row's values packed by int8send/float8send;
    aggregated into one bytea, a chunk crosses in one message and numpy reads it without a Python loop (one
    message per row, as COPY sends them, cost 7 us each)."""
    cursor.execute(f"SELECT string_agg(packed, ''::bytea) FROM ({sql}) rows (packed)", params, binary=True)
    (data,) = cursor.fetchone()
    return np.frombuffer(data or b"", dtype=np.dtype(fields))


BOX_FIELDS = [("image", ">i8"), ("class_id", ">i8"), ("x", ">f8"), ("y", ">f8"), ("w", ">f8"), ("h", ">f8")]
BOX_VALUES = """int8send(d.datarow_id) || int8send(d.ontology_class_id) || float8send(coalesce(d.x, 0))
    || float8send(coalesce(d.y, 0)) || float8send(coalesce(d.w, 0)) || float8send(coalesce(d.h, 0))"""


def _chunk(cursor: psycopg.Cursor, run: EvaluationRun, datarow_ids: list[int]) -> tuple[GroundTruth, Detections]:
    truths = _packed_rows(
        cursor,
        f"""SELECT {BOX_VALUES} || float8send(coalesce(d.area, d.w * d.h, 0))
                   || int8send(CASE WHEN d.attributes->>'iscrowd' IN ('1', 'true') THEN 1 ELSE 0 END) || int8send(d.id)
            FROM {tables.LABEL} d JOIN {tables.ONTOLOGY_CLASS} o ON o.id = d.ontology_class_id
            WHERE d.datarow_id = ANY(%s) AND d.kind = 'box' AND o.project_id = %s""",
        [datarow_ids, run.project_id],
        [*BOX_FIELDS, ("area", ">f8"), ("crowd", ">i8"), ("id", ">i8")],
    )
    detections = _packed_rows(
        cursor,
        f"""SELECT {BOX_VALUES} || float8send(d.score) || int8send(d.id)
            FROM {tables.PREDICTION} d
            WHERE d.model_version_id = %s AND d.datarow_id = ANY(%s) AND d.kind = 'box'""",
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


# COPY's binary format: a header, then per row the field count and each field's length (-1: null) and bytes.
COPY_HEADER, COPY_TRAILER = b"PGCOPY\n\xff\r\n\x00" + bytes(8), b"\xff\xff"


def _copy_rows(values: dict[str, np.ndarray | None]) -> bytes:
    """Rows of MATCH_COLUMNS in COPY's binary format, built by numpy: `values` per column (None: null in every row)."""
    names = [name.strip() for name in MATCH_COLUMNS.split(",")]
    count = len(next(value for value in values.values() if value is not None))
    fields = [("count", ">i2")]
    for name in names:
        fields.append((f"{name}_size", ">i4"))
        if values[name] is not None:
            fields.append(
                (name, values[name].dtype.newbyteorder(">") if values[name].dtype.kind in "if" else values[name].dtype)
            )
    rows = np.empty(count, dtype=fields)
    rows["count"] = len(names)
    for name in names:
        rows[f"{name}_size"] = -1 if values[name] is None else values[name].dtype.itemsize
        if values[name] is not None:
            rows[name] = values[name]
    return rows.tobytes()


def _match_rows(run_id: int, matches: Matches) -> bytes:
    """The chunk's ObjectMatch rows: the four shapes of null (with or without a best other, on either side)."""
    parts = []
    for side, image, own_id, other_id, class_id, other_class, outcome, iou, score in (
        ("label", matches.label_image, matches.label_id, matches.label_other_id, matches.label_class,
         matches.label_other_class, matches.label_outcome, matches.label_iou, None),
        ("prediction", matches.prediction_image, matches.prediction_id, matches.prediction_other_id,
         matches.prediction_class, matches.prediction_class, matches.prediction_outcome, matches.prediction_iou,
         matches.prediction_score),
    ):  # fmt: skip
        for has_other in (True, False):
            rows = (other_id >= 0) == has_other
            if not rows.any():
                continue
            count = int(rows.sum())
            other = other_id[rows] if has_other else None
            values = {
                "run_id": np.full(count, run_id, np.int64),
                "datarow_id": image[rows],
                "side": np.full(count, side.encode(), f"S{len(side)}"),
                "outcome": outcome[rows].astype("S2"),
                "label_id": own_id[rows] if side == "label" else other,
                "prediction_id": other if side == "label" else own_id[rows],
                "ontology_class_id": class_id[rows],
                "predicted_class_id": (other_class[rows] if has_other else None) if side == "label" else class_id[rows],
                "iou": iou[rows] if has_other else None,
                "score": score[rows] if score is not None else None,
            }
            parts.append(_copy_rows(values))
    return b"".join(parts)


def _open_connection() -> psycopg.Connection:
    """A writer connection of its own on the current tenant's schema, without the per-row foreign-key triggers where
    it may (as imports do): 4 checks per match were 40 % of a run's time. The rows still reference only what exists:
    each chunk's datarows and the project's classes are locked FOR KEY SHARE before they are read (what the triggers
    would lock, set-based), and the run's row is updated in the same transaction. Read committed, not a snapshot:
    under repeatable read, locking a datarow that was edited meanwhile (a tag) would fail the run."""
    django_connection = connections[WRITER]
    conn = psycopg.connect(**django_connection.get_connection_params())
    # Server-side parameters (Django's settings bind them client-side), so results may come in binary.
    conn.cursor_factory = psycopg.Cursor
    skip_row_by_row_foreign_key_checks(conn)
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
        cursor.execute(f"SELECT 1 FROM {tables.ONTOLOGY_CLASS} WHERE project_id = %s FOR KEY SHARE", [run.project_id])
        for datarow_ids in _member_chunks(reader, run):
            cursor.execute(f"SELECT 1 FROM {tables.DATAROW} WHERE id = ANY(%s) FOR KEY SHARE", [datarow_ids])
            truths, detections = _chunk(cursor, run, datarow_ids)
            matches = evaluation.add(truths, detections)
            with cursor.copy(f"COPY {match_table} ({MATCH_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_HEADER + _match_rows(run.pk, matches) + COPY_TRAILER)
            counts["images"] += len(datarow_ids)
            counts["ground_truth"] += len(truths.id)
            counts["predictions"] += len(detections.id)
            if counts["predictions"] > EVALUATION_MAX_PREDICTIONS:
                raise ApplicationError(
                    f"The slice holds more than {EVALUATION_MAX_PREDICTIONS:,} box predictions of the version: evaluate "
                    "it split by split (splits), or a smaller slice."
                )
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
