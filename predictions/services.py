"""Model versions and prediction runs: register a trained version, apply it to a slice or a dataset as a Job."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections, transaction

from datasets.models import Dataset, ModelVersion, Prediction
from jobs.models import Job
from jobs.services import job_create, job_report_progress
from mlops import tables
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError, Conflict
from mlops.storage import open_uri
from predictions.active_selection import Selection, selection_sql
from predictions.detection_selection import BOX_STRATEGIES, box_selection_sql
from predictions.metrics import Scope, classification_comparison, top1_disagreement_sql
from predictions.models import PredictionRun
from search.indexing import datarows_changed
from slices.models import Slice, SliceMember, Split
from slices.selectors import slice_stored_members_require
from slices.services import slice_create_from_select
from tenancy.principal import Principal

# Datarows handed to the trainer's predict at once (it batches them by batch_size): reading ids by keyset in
# chunks keeps memory flat on million-row datasets while loading the weights once per chunk only.
PREDICTION_RUN_JOB_KIND = "prediction-run"
PREDICTION_CHUNK_ROWS = 8192
# A detector's top_k bound: COCO scores at most 100 boxes per image; a few times that leaves room for crowded scenes
# while one prediction run stays bounded (rows written = datarows x top_k at most).
MAX_BOXES_PER_IMAGE = 300


def model_version_register(*, run: Any) -> ModelVersion:
    # `run` is a training.models.TrainingRun, not imported: predictions sits below training.
    """The version a finished training run produced: named after its model, numbered after the run."""
    return ModelVersion.objects.create(
        project_id=run.model.project_id, name=run.model.name, version=str(run.number), training_run=run
    )


def prediction_run_start(
    *,
    principal: Principal,
    model_version: ModelVersion,
    slice: Slice | None = None,
    splits: tuple[int, ...] = (),
    dataset: Dataset | None = None,
    top_k: int = 5,
    batch_size: int = 64,
    score_threshold: float = 0.0,
) -> PredictionRun:
    """top_k: a classifier's best classes per datarow, or a detector's most boxes per image (those scoring at least
    score_threshold)."""
    if (slice is None) == (dataset is None):
        raise ApplicationError(
            "Give either a slice or a dataset to predict on.",
            {"fields": {"slice_id": ["Exactly one of slice_id and dataset_id is required."]}},
        )
    run = getattr(model_version, "training_run", None)
    if run is None or not run.artifact_files:
        raise ApplicationError(
            f"Model version {model_version} has no trained artifacts to predict with.",
            {"fields": {"model_version_id": ["Needs a version registered by a training run."]}},
        )
    if slice is not None:
        slice_stored_members_require(slice, project_id=model_version.project_id, field="slice_id")
        # A run over nothing would "succeed" with no predictions: say so now, on the field that emptied it.
        members = SliceMember.objects.filter(slice=slice)
        if not (members.filter(split__in=splits) if splits else members).exists():
            where = f" in {', '.join(Split(value).label for value in splits)}" if splits else ""
            raise ApplicationError(
                f"Slice '{slice.name}' has no members{where}: nothing to predict.",
                {"fields": {"splits" if splits else "slice_id": ["No members."]}},
            )
    elif splits:
        raise ApplicationError("Splits are a slice's.", {"fields": {"splits": ["Splits need a slice_id."]}})
    elif dataset.project_id != model_version.project_id:
        raise ApplicationError(
            f"Dataset {dataset.pk} belongs to another project.", {"fields": {"dataset_id": ["Not found."]}}
        )
    detection = run.model.task == "detection"
    most, what = (MAX_BOXES_PER_IMAGE, "boxes per image") if detection else (len(run.classes), "the model's classes")
    if not 1 <= top_k <= most:
        raise ApplicationError(
            f"top_k must be between 1 and {most} ({what}).", {"fields": {"top_k": [f"At most {most}."]}}
        )
    if not 0 <= score_threshold <= 1:
        raise ApplicationError(
            "score_threshold must be between 0 and 1.", {"fields": {"score_threshold": ["Between 0 and 1."]}}
        )
    with transaction.atomic(using=WRITER):
        job = job_create(principal=principal, kind=PREDICTION_RUN_JOB_KIND)
        prediction_run = PredictionRun.objects.create(
            model_version=model_version,
            job=job,
            slice=slice,
            splits=list(splits),
            dataset=dataset,
            top_k=top_k,
            batch_size=batch_size,
            score_threshold=score_threshold,
            created_by=principal.user_id,
        )
        Job.objects.filter(pk=job.pk).update(params={"prediction_run_id": prediction_run.pk})
    return prediction_run


def _target_rows(prediction_run: PredictionRun, *, after: int, limit: int) -> list[tuple[int, str]]:
    """The next `limit` (datarow id, uri) of the run's slice or dataset after datarow id `after` (keyset)."""
    if prediction_run.slice_id is not None:
        split_filter = " AND m.split = ANY(%s)" if prediction_run.splits else ""
        sql = f"""SELECT d.id, d.uri FROM {tables.SLICE_MEMBER} m JOIN {tables.DATAROW} d ON d.id = m.datarow_id
                  WHERE m.slice_id = %s AND m.datarow_id > %s{split_filter} ORDER BY m.datarow_id LIMIT %s"""
        params = [prediction_run.slice_id, after, *([prediction_run.splits] if prediction_run.splits else []), limit]
    else:
        sql = f"SELECT id, uri FROM {tables.DATAROW} WHERE dataset_id = %s AND id > %s ORDER BY id LIMIT %s"
        params = [prediction_run.dataset_id, after, limit]
    with connections[WRITER].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _target_chunks(prediction_run: PredictionRun) -> Iterator[list[tuple[int, str]]]:
    after = 0
    while rows := _target_rows(prediction_run, after=after, limit=PREDICTION_CHUNK_ROWS):
        yield rows
        after = rows[-1][0]


def _target_count(prediction_run: PredictionRun) -> int:
    if prediction_run.slice_id is not None:
        members = Slice.objects.using(WRITER).get(pk=prediction_run.slice_id).members
        return (members.filter(split__in=prediction_run.splits) if prediction_run.splits else members).count()
    return Dataset.objects.using(WRITER).filter(pk=prediction_run.dataset_id).values_list("datarow_count", flat=True)[0]


def predictions_write(
    *, prediction_run: PredictionRun, batch: list[tuple[int, list[tuple]]], class_ids: list[int]
) -> tuple[int, int]:
    """Replace the version's predictions on the batch's datarows with the batch's, in one statement that also keeps
    the datasets' prediction counts; return (predictions written, predictions replaced). Each datarow's list holds
    a classifier's (class index, score) or a detector's (class index, score, (x, y, w, h)): a box prediction."""
    datarow_ids = [key for key, _ in batch]
    rows = []
    for key, top in batch:
        for index, score, *box in top:
            rows.append((key, class_ids[index], score, *(box[0] if box else (None,) * 4)))
    with connections[WRITER].cursor() as cursor:
        cursor.execute(
            f"""
            WITH gone AS (
                DELETE FROM {tables.PREDICTION} p
                WHERE p.model_version_id = %(version)s AND p.datarow_id = ANY(%(datarows)s)
                RETURNING p.datarow_id),
            added AS (
                INSERT INTO {tables.PREDICTION} (datarow_id, model_version_id, run_id, ontology_class_id, kind,
                                                     score, x, y, w, h, area, attributes, created_at)
                SELECT r.datarow_id, %(version)s, %(run)s, r.class_id,
                       CASE WHEN r.x IS NULL THEN 'classification' ELSE 'box' END, r.score, r.x, r.y, r.w, r.h,
                       r.w * r.h, '{{}}', now()
                FROM unnest(%(row_datarows)s::bigint[], %(row_classes)s::bigint[], %(row_scores)s::float8[],
                            %(row_x)s::float8[], %(row_y)s::float8[], %(row_w)s::float8[], %(row_h)s::float8[])
                     AS r(datarow_id, class_id, score, x, y, w, h)
                RETURNING datarow_id),
            delta AS (
                SELECT d.dataset_id, sum(c.change) AS change
                FROM (SELECT datarow_id, -1 AS change FROM gone UNION ALL SELECT datarow_id, 1 FROM added) c
                -- the batch's ids again, so the datarows are found by key rather than by scanning them all
                JOIN {tables.DATAROW} d ON d.id = c.datarow_id AND d.id = ANY(%(datarows)s)
                GROUP BY d.dataset_id),
            counted AS (
                UPDATE {tables.DATASET} ds SET prediction_count = ds.prediction_count + delta.change, updated_at = now()
                FROM delta WHERE ds.id = delta.dataset_id RETURNING ds.id)
            SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM gone), (SELECT count(*) FROM counted)""",
            {
                "version": prediction_run.model_version_id,
                "run": prediction_run.pk,
                "datarows": datarow_ids,
                "row_datarows": [row[0] for row in rows],
                "row_classes": [row[1] for row in rows],
                "row_scores": [row[2] for row in rows],
                "row_x": [row[3] for row in rows],
                "row_y": [row[4] for row in rows],
                "row_w": [row[5] for row in rows],
                "row_h": [row[6] for row in rows],
            },
        )
        added, replaced, _ = cursor.fetchone()
    return added, replaced


def prediction_run_execute(*, prediction_run: PredictionRun, job: Job) -> PredictionRun:
    """Batched inference through the trainer's predict, each batch written (and handed to indexing) as it comes."""
    # Imported here: the trainers load in the training workers only.
    from predictions.trainers import trainer_resolve
    from trainers.interface import Example

    model_version = prediction_run.model_version
    training_run = model_version.training_run
    trainer = trainer_resolve(name=training_run.model.trainer)
    class_ids = [class_id for class_id, _ in training_run.classes]
    total = _target_count(prediction_run)
    for chunk in _target_chunks(prediction_run):
        items = [Example(key=datarow_id, uri=uri, target=-1) for datarow_id, uri in chunk]
        # A detector also takes the score threshold (a classifier's predict has no such parameter).
        detector_options = (
            {"score_threshold": prediction_run.score_threshold} if training_run.model.task == "detection" else {}
        )
        batches = trainer.predict(
            artifact_dir=Path(training_run.artifact_uri),
            items=items,
            opener=open_uri,
            batch_size=prediction_run.batch_size,
            top_k=prediction_run.top_k,
            **detector_options,
        )
        pending = {datarow_id for datarow_id, _ in chunk}
        for batch in batches:
            _check_batch_keys(batch, pending, trainer=training_run.model.trainer)
            with transaction.atomic(using=WRITER):
                added, _ = predictions_write(prediction_run=prediction_run, batch=batch, class_ids=class_ids)
                prediction_run.datarow_count += len(batch)
                prediction_run.prediction_count += added
                prediction_run.save(update_fields=["datarow_count", "prediction_count"])
                datarows_changed(project_id=model_version.project_id, datarow_ids=[key for key, _ in batch])
            job_report_progress(
                job=job,
                done=prediction_run.datarow_count,
                total=total,
                counters={"datarows": prediction_run.datarow_count, "predictions": prediction_run.prediction_count},
                message=f"{prediction_run.datarow_count} of {total} datarows predicted",
            )
        if pending:
            raise ApplicationError(
                f"Trainer '{training_run.model.trainer}' returned no prediction for {len(pending)} "
                f"of the {len(chunk)} datarows it was given (e.g. datarow {min(pending)})."
            )
    job_report_progress(
        job=job,
        done=prediction_run.datarow_count,
        total=prediction_run.datarow_count,
        counters={"datarows": prediction_run.datarow_count, "predictions": prediction_run.prediction_count},
    )
    return prediction_run


def _check_batch_keys(batch: list, pending: set[int], *, trainer: str) -> None:
    """A batch may only predict datarows of its chunk not predicted yet: a trainer that repeats or invents keys
    would otherwise replace predictions it never made, or skip datarows without a trace."""
    keys = [key for key, _ in batch]
    unexpected = [key for key in keys if key not in pending]
    if unexpected or len(set(keys)) != len(keys):
        raise ApplicationError(
            f"Trainer '{trainer}' returned a prediction for datarow {(unexpected or keys)[0]} "
            f"that it was not given or had already predicted; nothing of that batch was written."
        )
    pending.difference_update(keys)


def selection_create(
    *,
    principal: Principal,
    prediction_run: PredictionRun,
    selection: Selection,
    name: str,
    pool_slice: Slice | None = None,
) -> Slice:
    """The next slice to label: the prediction run's k datarows the strategy ranks first, as an ids slice."""
    project_id = prediction_run.model_version.project_id
    if prediction_run.job.status != Job.Status.SUCCEEDED:
        raise Conflict(
            f"Prediction run {prediction_run.pk} has not succeeded (it is {prediction_run.job.status}).",
            {"status": prediction_run.job.status},
        )
    if selection.strategy == "disagreement" and selection.unlabeled_only:
        raise ApplicationError(
            "Disagreement with ground truth needs labelled datarows; drop unlabeled_only.",
            {"fields": {"unlabeled_only": ["Not with the disagreement strategy."]}},
        )
    if pool_slice is not None:
        slice_stored_members_require(pool_slice, project_id=project_id, field="pool_slice_id")
    if selection.other_model_version_id is not None and selection.strategy != "box_disagreement":
        raise ApplicationError(
            "Only box_disagreement compares with another model version.",
            {"fields": {"other_model_version_id": ["Only with the box_disagreement strategy."]}},
        )
    if selection.strategy in BOX_STRATEGIES:
        _check_box_selection(prediction_run, selection)
        sql, params = box_selection_sql(prediction_run_id=prediction_run.pk, selection=selection)
    else:
        if selection.strategy != "random" and _run_kind(prediction_run) == "box":
            raise ApplicationError(
                f"Prediction run {prediction_run.pk} predicted boxes; '{selection.strategy}' ranks classifications.",
                {"fields": {"strategy": [f"A detector's run takes {', '.join(BOX_STRATEGIES)} or random."]}},
            )
        sql, params = selection_sql(prediction_run_id=prediction_run.pk, selection=selection)
    return slice_create_from_select(
        project=prediction_run.model_version.project,
        name=name,
        created_by=principal.user_id,
        select_sql=sql,
        params=params,
        description=f"{selection.strategy}: top {selection.k} of prediction run {prediction_run.pk} "
        f"({prediction_run.model_version})",
    )


def _run_kind(prediction_run: PredictionRun) -> str | None:
    """What the run predicted: a run writes one kind, so any one of its rows (by the run's index) tells."""
    return next(iter(Prediction.objects.filter(run=prediction_run).values_list("kind", flat=True)[:1]), None)


def _check_box_selection(prediction_run: PredictionRun, selection: Selection) -> None:
    if not 0 <= selection.score_floor <= 1:
        raise ApplicationError(
            "score_floor must be between 0 and 1.", {"fields": {"score_floor": ["Between 0 and 1."]}}
        )
    if _run_kind(prediction_run) != "box":
        raise ApplicationError(
            f"Prediction run {prediction_run.pk} has no box predictions for '{selection.strategy}' to rank.",
            {"fields": {"strategy": ["Needs a detector's run."]}},
        )
    if selection.strategy != "box_disagreement":
        return
    other = ModelVersion.objects.filter(
        pk=selection.other_model_version_id, project_id=prediction_run.model_version.project_id
    ).first()
    if other is None:
        raise ApplicationError(
            "box_disagreement needs another model version of the project to compare with.",
            {"fields": {"other_model_version_id": ["A model version of this project is required."]}},
        )
    if other.pk == prediction_run.model_version_id:
        raise ApplicationError(
            f"Model version {other.pk} is the run's own; compare with another one.",
            {"fields": {"other_model_version_id": ["Must differ from the run's model version."]}},
        )


def model_versions_compare(
    *,
    principal: Principal,
    baseline: ModelVersion,
    candidate: ModelVersion,
    scope: Scope = Scope(),
    disagreement_slice_name: str,
) -> tuple[dict, Slice]:
    """Per-class deltas of `candidate` over `baseline`, and an ids slice of the datarows their top-1 disagree on."""
    if baseline.project_id != candidate.project_id:
        raise ApplicationError("Both model versions must belong to the same project.")
    comparison = classification_comparison(baseline=baseline, candidate=candidate, scope=scope)
    sql, params = top1_disagreement_sql(baseline=baseline, candidate=candidate, scope=scope)
    disagreements = slice_create_from_select(
        project=baseline.project,
        name=disagreement_slice_name,
        created_by=principal.user_id,
        select_sql=sql,
        params=params,
        description=f"top-1 of {baseline} and {candidate} disagree",
    )
    return comparison, disagreements
