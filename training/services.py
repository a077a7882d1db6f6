"""Model definitions and training runs: create, start (snapshot the labels, queue the job), execute."""

import traceback
from collections import deque
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from jobs.models import Job
from jobs.services import JobCancelled, job_create, job_report_progress
from mlops import tables
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError, Conflict
from mlops.metrics import training_step
from mlops.storage import open_uri, tenant_path
from predictions.ground_truth import classification_truth_sql
from predictions.selectors import model_version_exists
from predictions.services import model_version_register
from predictions.trainers import trainer_resolve
from projects.models import Project
from slices.models import Slice, Split
from tenancy.principal import Principal
from trainers.interface import ConfigError, EpochMetrics, StepProgress, Trainer
from trainers.weights import WeightsError, sniff_weights
from training.models import ModelDefinition, TrainingRun
from training.selectors import training_examples

TRAINING_RUN_JOB_KIND = "training-run"
SPLIT_NAMES = {split.label: split.value for split in Split}
# A run keeps its last log lines (and each line's head): enough to diagnose, bounded however long it trains.
LOG_LINES_KEPT = 2000
LOG_LINE_CHARS = 1000
# Starting weights are read from the tenant's own storage only: a web address could be a model hub.
WEIGHTS_SCHEMES = ("", "file", "s3")


def trainer_config_validate(*, trainer: Trainer, config: dict, field: str = "hyperparameters") -> dict:
    """The trainer's own validation (defaults filled in); every bad value is in one 400, under `<field>.<key>`. Where
    the decoded image cache lives is the platform's choice (per slice, in tenant storage), never a folder a user
    names."""
    problems = {"cache_dir": ["chosen by the platform; leave it out"]} if config.get("cache_dir") is not None else {}
    try:
        valid = trainer.validate_config(dict(config))
    except ConfigError as error:
        for key, messages in error.problems.items():
            problems.setdefault(key, []).extend(messages)
    if not problems and valid.get("init_weights"):
        _init_weights_check(valid["init_weights"], field=f"{field}.init_weights")
    if problems:
        raise ApplicationError(
            f"Invalid {field}: "
            + "; ".join(f"{key}: {message}" for key, messages in problems.items() for message in messages),
            {"fields": {f"{field}.{key}": messages for key, messages in problems.items()}},
        )
    return valid


def trainer_task(trainer: Trainer) -> str:
    return getattr(trainer, "task", ModelDefinition.Task.CLASSIFICATION)


def _init_weights_check(uri: str, *, field: str) -> None:
    """What can be checked without torch: the URI is in the tenant's storage, readable, and a safetensors file or a
    torch zip checkpoint (no bare pickle). Whether the tensors fit the architecture is checked when the run starts."""
    if urlsplit(uri).scheme not in WEIGHTS_SCHEMES:
        raise ApplicationError(
            f"Invalid {field}: use a path or file:// URI in the tenant's folder, or s3://.",
            {"fields": {field: ["Only the tenant's own storage: a path, file:// or s3://."]}},
        )
    try:
        with open_uri(uri) as stream:
            sniff_weights(stream)
    except WeightsError as error:
        raise ApplicationError(f"Invalid {field}: {uri} is {error}.", {"fields": {field: [str(error)]}}) from error
    except ApplicationError as error:  # outside the tenant's storage, or not there
        raise ApplicationError(f"Invalid {field}: {error.message}", {"fields": {field: [error.message]}}) from error


def model_definition_create(
    *, principal: Principal, project: Project, name: str, trainer: str, hyperparameters: dict, task: str | None = None
) -> ModelDefinition:
    """`task` defaults to the trainer's (a detector's is detection); one that is not the trainer's is a 400."""
    resolved = trainer_resolve(name=trainer)
    if task is not None and task != trainer_task(resolved):
        raise ApplicationError(
            f"Trainer '{trainer}' is a {trainer_task(resolved)} trainer, not {task}.",
            {"fields": {"task": [f"Use {trainer_task(resolved)} with this trainer."]}},
        )
    task = trainer_task(resolved)
    config = trainer_config_validate(trainer=resolved, config=hyperparameters)
    if ModelDefinition.objects.filter(project=project, name=name).exists():
        raise Conflict(
            f"A model named '{name}' already exists in project {project.pk}.", {"fields": {"name": ["Taken."]}}
        )
    # Its runs register versions under this name: it must not be one that imported predictions use.
    if model_version_exists(project=project, name=name):
        raise Conflict(
            f"Model versions named '{name}' were imported into project {project.pk}; choose another name.",
            {"fields": {"name": ["Used by imported model versions."]}},
        )
    return ModelDefinition.objects.create(
        project=project, name=name, task=task, trainer=trainer, hyperparameters=config, created_by=principal.user_id
    )


def _split_values(names: list[str], field: str) -> list[int]:
    unknown = [name for name in names if name not in SPLIT_NAMES]
    if unknown:
        raise ApplicationError(
            f"Unknown split {unknown[0]!r}.", {"fields": {field: [f"Use {', '.join(SPLIT_NAMES)}."]}}
        )
    return [SPLIT_NAMES[name] for name in names]


def _snapshot_examples(*, run: TrainingRun, splits: list[int]) -> None:
    """The labelled members of the run's splits, with their classes as of now, in one INSERT ... SELECT."""
    truth = classification_truth_sql(
        f"EXISTS (SELECT 1 FROM {tables.SLICE_MEMBER} sm "
        f"WHERE sm.slice_id = %(slice)s AND sm.datarow_id = l.datarow_id)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO training_trainingexample (run_id, datarow_id, split, ontology_class_id)
            SELECT %(run)s, m.datarow_id, m.split, t.ontology_class_id
            FROM {tables.SLICE_MEMBER} m JOIN ({truth}) t ON t.datarow_id = m.datarow_id
            WHERE m.slice_id = %(slice)s AND m.split = ANY(%(splits)s)""",
            {"run": run.pk, "slice": run.slice_id, "splits": splits},
        )


def _snapshot_boxes(*, run: TrainingRun, splits: list[int]) -> None:
    """A detection run's images: the members of its splits with at least one box label, and every such box as of
    now (a box of a class deleted since cannot exist: classes are protected)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH boxes AS (
                INSERT INTO training_trainingbox (run_id, datarow_id, ontology_class_id, x, y, w, h)
                SELECT %(run)s, l.datarow_id, l.ontology_class_id, l.x, l.y, l.w, l.h
                FROM {tables.SLICE_MEMBER} m JOIN {tables.LABEL} l ON l.datarow_id = m.datarow_id
                WHERE m.slice_id = %(slice)s AND m.split = ANY(%(splits)s) AND l.kind = 'box'
                  AND l.w > 0 AND l.h > 0
                RETURNING datarow_id)
            INSERT INTO training_trainingexample (run_id, datarow_id, split, ontology_class_id)
            SELECT %(run)s, m.datarow_id, m.split, NULL FROM {tables.SLICE_MEMBER} m
            WHERE m.slice_id = %(slice)s AND m.datarow_id IN (SELECT datarow_id FROM boxes)""",
            {"run": run.pk, "slice": run.slice_id, "splits": splits},
        )


def _classes_and_counts(*, run: TrainingRun, validation: list[int]) -> tuple[list, int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT o.id, o.name FROM {tables.ONTOLOGY_CLASS} o
            WHERE o.id IN (SELECT DISTINCT ontology_class_id FROM training_trainingexample WHERE run_id = %(run)s
                           UNION SELECT DISTINCT ontology_class_id FROM training_trainingbox WHERE run_id = %(run)s)
            ORDER BY o.name""",
            {"run": run.pk},
        )
        classes = [list(row) for row in cursor.fetchall()]
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE NOT split = ANY(%s)), count(*) FILTER (WHERE split = ANY(%s))
            FROM training_trainingexample WHERE run_id = %s""",
            [validation, validation, run.pk],
        )
        train_count, validation_count = cursor.fetchone()
    return classes, train_count, validation_count


def training_run_start(
    *,
    principal: Principal,
    model: ModelDefinition,
    slice: Slice,
    train_splits: list[str],
    validation_splits: list[str],
    config_overrides: dict | None = None,
) -> TrainingRun:
    """A queued run on `slice` (its stored members and split), with the labels it will train on snapshotted now."""
    if slice.project_id != model.project_id:
        raise ApplicationError(
            f"Slice {slice.pk} belongs to another project.", {"fields": {"slice_id": ["Not found."]}}
        )
    if slice.kind == Slice.Kind.QUERY:
        raise ApplicationError(
            f"Slice '{slice.name}' is a live query; freeze it (or use an ids slice) to train on it.",
            {"fields": {"slice_id": ["Needs stored members."]}},
        )
    if slice.kind == Slice.Kind.FROZEN and slice.frozen_at is None:
        raise Conflict(f"Slice '{slice.name}' is still being frozen; train on it once its job has finished.")
    train = _split_values(train_splits, "train_splits")
    validation = _split_values(validation_splits, "validation_splits")
    if set(train) & set(validation):
        raise ApplicationError(
            "A split cannot be used both to train and to validate.",
            {"fields": {"validation_splits": ["Overlaps train_splits."]}},
        )
    config = trainer_config_validate(
        trainer=trainer_resolve(name=model.trainer),
        config={**model.hyperparameters, **(config_overrides or {})},
        field="config",
    )
    with transaction.atomic(using=WRITER):
        # Numbers runs one after another, even when two start at once.
        ModelDefinition.objects.select_for_update().filter(pk=model.pk).first()
        number = (model.runs.aggregate(last=Max("number"))["last"] or 0) + 1
        if model_version_exists(project=model.project, name=model.name, version=str(number)):
            raise Conflict(
                f"Model version {model.name}@{number}, which this run would register, was imported "
                f"meanwhile; rename the model or remove those predictions."
            )
        job = job_create(principal=principal, kind=TRAINING_RUN_JOB_KIND)
        run = TrainingRun.objects.create(
            model=model,
            number=number,
            job=job,
            slice=slice,
            train_splits=train_splits,
            validation_splits=validation_splits,
            config=config,
            created_by=principal.user_id,
        )
        detection = model.task == ModelDefinition.Task.DETECTION
        (_snapshot_boxes if detection else _snapshot_examples)(run=run, splits=train + validation)
        run.classes, run.train_examples, run.validation_examples = _classes_and_counts(run=run, validation=validation)
        if not run.train_examples:
            raise ApplicationError(
                f"Slice '{slice.name}' has no member with a {'box' if detection else 'classification'} "
                f"label in {', '.join(train_splits)}.",
                {"fields": {"slice_id": ["Nothing to train on."]}},
            )
        run.save(update_fields=["classes", "train_examples", "validation_examples"])
        # The message goes out on commit and carries only the job id; the job's params name the run.
        Job.objects.filter(pk=job.pk).update(params={"training_run_id": run.pk})
    return run


class RunLog:
    """The run's log lines, bounded (the newest kept), written to the run at each epoch and at the end."""

    def __init__(self, run: TrainingRun):
        self._lines = deque(run.logs.splitlines(), maxlen=LOG_LINES_KEPT)

    def __call__(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        for part in str(line).splitlines() or [""]:
            self._lines.append(f"{stamp} {part[:LOG_LINE_CHARS]}")

    def text(self) -> str:
        return "\n".join(self._lines)


def _progress_counters(progress: StepProgress) -> dict:
    return {
        "epoch": progress.epoch,
        "epochs": progress.epochs,
        "step": progress.step,
        "steps": progress.steps,
        "loss": progress.loss,
        "accuracy": progress.accuracy,
        "images_per_second": progress.images_per_second,
        "eta_seconds": progress.eta_seconds,
        "loss_parts": progress.loss_parts,
    }


def training_run_execute(*, run: TrainingRun, job: Job) -> TrainingRun:
    """Train, report every step on the job (a cancel request stops it at the next step), register the version.

    A failure or a cancel keeps the logs (and the error) on the run, then propagates to the job runner."""
    log = RunLog(run)
    output_dir = _output_dir(run)
    run.started_at, run.artifact_uri = timezone.now(), str(output_dir)
    run.save(update_fields=["started_at", "artifact_uri"])

    def on_step(progress: StepProgress) -> None:
        done = (progress.epoch - 1) * progress.steps + progress.step
        job_report_progress(
            job=job,
            done=done,
            total=progress.epochs * progress.steps,
            counters=_progress_counters(progress),
            message=f"epoch {progress.epoch}/{progress.epochs} step {progress.step}/{progress.steps} "
            f"loss {progress.loss:.4f}",
        )
        training_step(images_per_second=progress.images_per_second, loss=progress.loss)

    def on_epoch(metrics: EpochMetrics) -> None:
        run.epochs = [*run.epochs, asdict(metrics)]
        run.logs = log.text()
        run.save(update_fields=["epochs", "logs"])

    try:
        trainer = trainer_resolve(name=run.model.trainer)
        train, validation = training_examples(run=run)
        log(
            f"training {run.model.name} run {run.number} with {run.model.trainer}: {len(train)} training and "
            f"{len(validation)} validation examples, {len(run.classes)} classes"
        )
        result = trainer.train(
            train=train,
            validation=validation,
            classes=[name for _, name in run.classes],
            config=_config_with_cache(run),
            opener=open_uri,
            output_dir=output_dir,
            on_step=on_step,
            on_epoch=on_epoch,
            log=log,
        )
    except JobCancelled:
        log("cancelled on request")
        _end(run, log)
        raise
    except Exception as error:
        log(traceback.format_exc())
        _end(run, log, error=f"{type(error).__name__}: {error}")
        raise
    run.device, run.artifact_files = result.device, list(result.artifact_files)
    log(f"finished on {result.device}; artifacts {', '.join(result.artifact_files)} in {run.artifact_uri}")
    with transaction.atomic(using=WRITER):
        _end(run, log)
        model_version_register(run=run)
    return run


def _config_with_cache(run: TrainingRun) -> dict:
    """A decoded-image cache per slice in tenant storage, so later runs on the slice skip decoding (the cache
    checks that it holds the same images at the same size before it is reused)."""
    if run.config.get("cache") != "decoded" or run.slice_id is None:
        return run.config
    return {**run.config, "cache_dir": str(tenant_path("training", "decoded-cache", f"slice-{run.slice_id}"))}


def _output_dir(run: TrainingRun) -> Path:
    """The run's artifacts folder in the tenant's storage."""
    path = tenant_path("training", "runs", str(run.pk), "artifacts")
    path.mkdir(exist_ok=True)
    return path


def _end(run: TrainingRun, log: RunLog, *, error: str = "") -> None:
    run.logs, run.error, run.finished_at = log.text(), error, timezone.now()
    run.save(update_fields=["logs", "error", "finished_at", "device", "artifact_files"])
