"""Import a manifest into a dataset: stream, validate per line, stage with COPY, merge in SQL, per batch.

on_error="skip": each batch commits on its own; bad lines are reported and left out; a cancel stops after
the batch in flight, so the committed counter always equals the rows added.
on_error="abort": the whole import is one transaction on the import connection; any bad line, a cancel,
a failure or a killed worker leaves the dataset exactly as it was.
"""

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import psycopg
from django.conf import settings

from datasets.importers import staging
from datasets.importers.formats import FORMATS, FORMATS_NEEDING_MODEL, FORMATS_WITH_IMAGES
from datasets.importers.image_paths import images_uri_check
from datasets.importers.records import BatchBuffers, FormatOptions, LineError, RecordWriter
from datasets.job_kinds import DATASET_IMPORT_JOB_KIND
from datasets.locks import dataset_lock_release, dataset_lock_take
from datasets.models import Dataset
from datasets.selectors import field_catalog_types
from jobs.models import Job
from jobs.services import OWNED_UPLOAD_PARAM, job_create
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError
from mlops.storage import UPLOAD_SCHEME, source_check, tenant_path
from tenancy.principal import Principal

# The job keeps the first errors for the API; the full list is the downloadable report.
ERRORS_KEPT_ON_JOB = 50
MODES = ("upsert", "skip_existing", "fail_on_existing")
ON_ERROR = ("skip", "abort")


class ImportAborted(ApplicationError):
    """on_error=abort met a bad line: nothing of the import is kept."""


class ImportFailed(ApplicationError):
    """on_error=skip, and every line was bad: the job fails rather than succeed with nothing imported."""

    @classmethod
    def of(cls, counters: "ImportCounters", first_error: dict) -> "ImportFailed":
        where = f"line {first_error['line']}, " if first_error["line"] else ""
        return cls(
            f"Nothing was imported: every line had errors ({counters.errors} errors on {counters.error_lines} "
            f"lines). First: {where}{first_error['field']} {first_error['message']}. All errors are in the "
            f"import's error report."
        )


@dataclass(frozen=True)
class ImportOptions:
    format: str = "jsonl"
    mode: str = "upsert"
    on_error: str = "skip"
    create_classes: bool = False
    model_name: str | None = None
    model_version: str | None = None
    # Where a COCO file's relative file_names (or a YOLO folder's images) are; see importers/image_paths.py.
    images_uri: str | None = None
    check_images: bool = False


@dataclass
class ImportCounters:
    lines: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    labels: int = 0
    predictions: int = 0
    errors: int = 0
    # Lines left out for their errors (a line may have several), and whether the import kept only part of its lines.
    error_lines: int = 0
    partial: bool = False
    committed_rows: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def every_line_failed(self) -> bool:
        """Errors, and not one line kept (inserted, updated, or left as it was by skip_existing)."""
        return bool(self.error_lines) and not (
            self.inserted or self.updated or self.skipped or self.labels or self.predictions
        )

    def add(self, batch: BatchBuffers, result: staging.BatchResult, errors: list[LineError]) -> None:
        self.lines = max([self.lines, *batch.line_paths, *(e.line for e in errors)])
        self.errors += len(errors)
        self.error_lines += len({error.line for error in errors})
        if result.merged:
            self.inserted += result.inserted
            self.updated += result.updated
            self.skipped += result.skipped
            self.labels += result.labels_added
            self.predictions += result.predictions_added


ProgressCallback = Callable[[ImportCounters, list[LineError]], None]


def error_report_path(source: str, *, create: bool = True) -> Path:
    return tenant_path("imports", source.replace(":", "-"), "errors.jsonl", create=create)


def _add_to_catalog(conn: psycopg.Connection, project_id: int, types: dict[str, str], path_counts: Counter) -> None:
    if not path_counts:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO datasets_fieldcatalogentry (project_id, path, field_type, row_count, updated_at)
            VALUES (%s, %s, %s, %s, now())
            ON CONFLICT (project_id, path) DO UPDATE
            SET row_count = datasets_fieldcatalogentry.row_count + EXCLUDED.row_count, updated_at = now()""",
            [(project_id, path, types[path], count) for path, count in path_counts.items()],
        )


def validate_import_options(options: ImportOptions) -> None:
    fields = {}
    if options.format not in FORMATS:
        fields["format"] = [f"Must be one of {', '.join(FORMATS)}."]
    if options.mode not in MODES:
        fields["mode"] = [f"Must be one of {', '.join(MODES)}."]
    if options.on_error not in ON_ERROR:
        fields["on_error"] = [f"Must be one of {', '.join(ON_ERROR)}."]
    if bool(options.model_name) != bool(options.model_version):
        fields["model_version"] = ["model_name and model_version go together."]
    elif options.format in FORMATS_NEEDING_MODEL and not options.model_name:
        fields["model_name"] = [f"Format {options.format} needs model_name and model_version."]
    if options.images_uri and options.format not in FORMATS_WITH_IMAGES:
        fields["images_uri"] = [f"Only formats {', '.join(sorted(FORMATS_WITH_IMAGES))} name images to find."]
    if options.check_images and options.format != "coco":
        fields["check_images"] = ["Only a coco import looks its images up (the other formats read each image)."]
    if fields:
        raise ApplicationError("Invalid import options.", {"fields": fields})


def dataset_import_run(
    *, dataset: Dataset, uri: str, options: ImportOptions, source: str, user: str, progress: ProgressCallback
) -> ImportCounters:
    """Run one import to the end, or to an abort. `progress` is called after every batch and may raise to stop
    (a cancel): in skip mode the batches before it stay committed, in abort mode nothing does.

    Two cores at work: this thread parses and validates batch N+1 while a second thread has PostgreSQL
    stage, check and merge batch N on the import connection. Counters and progress stay in this thread.
    """
    validate_import_options(options)
    default_model = (options.model_name, options.model_version) if options.model_name else None
    format_options = FormatOptions(
        images_uri=options.images_uri, check_images=options.check_images, create_classes=options.create_classes
    )
    # From the writer: the catalog this import extends, as the last import left it.
    writer = RecordWriter(field_catalog_types(project_id=dataset.project_id, using=WRITER), default_model=default_model)
    merge = staging.MergeOptions(
        dataset_id=dataset.pk,
        project_id=dataset.project_id,
        mode=options.mode,
        create_classes=options.create_classes,
        source=source,
        user=user,
    )
    abort_on_error = options.on_error == "abort"
    counters = ImportCounters()
    conn = staging.open_import_connection()
    try:
        with conn.cursor() as cursor:
            dataset_lock_take(cursor, dataset.pk)
        staging.stage_target(conn, dataset_id=dataset.pk, project_id=dataset.project_id)
        conn.commit()
        with open(error_report_path(source), "wb") as report, ThreadPoolExecutor(1, "import-sql") as sql_thread:

            def account(batch: BatchBuffers, done: Future) -> None:
                result = done.result()
                errors = sorted(batch.errors + result.errors, key=lambda e: (e.line, e.field))
                report.writelines(orjson.dumps(error.as_dict()) + b"\n" for error in errors)
                counters.add(batch, result, errors)
                if not abort_on_error:
                    counters.committed_rows = counters.inserted + counters.updated
                if errors and abort_on_error:
                    report.flush()
                    first = errors[0]
                    raise ImportAborted(
                        f"Import aborted: line {first.line}, {first.field} {first.message}. Nothing was imported.",
                        {"errors": [e.as_dict() for e in errors[:ERRORS_KEPT_ON_JOB]], "error_count": len(errors)},
                    )
                progress(counters, errors)

            in_flight: tuple[BatchBuffers, Future] | None = None
            for batch in FORMATS[options.format](uri, writer, settings.IMPORT_BATCH_LINES, format_options):
                if in_flight:
                    account(*in_flight)
                in_flight = batch, sql_thread.submit(_stage_check_merge, conn, merge, batch, writer, abort_on_error)
            if in_flight:
                account(*in_flight)
        conn.commit()
        counters.committed_rows = counters.inserted + counters.updated
        counters.partial = bool(counters.error_lines)
        return counters
    except BaseException:
        conn.rollback()
        raise
    finally:
        _release_and_close(conn, dataset.pk)


def _release_and_close(conn: psycopg.Connection, dataset_id: int) -> None:
    """Unlock before closing: a closed session's locks go only when its backend has exited, a moment later,
    and the next import or delete must not find the dataset still busy."""
    with suppress(psycopg.Error):
        with conn.cursor() as cursor:
            dataset_lock_release(cursor, dataset_id)
        conn.commit()
    conn.close()


def _stage_check_merge(
    conn: psycopg.Connection,
    merge: staging.MergeOptions,
    batch: BatchBuffers,
    writer: RecordWriter,
    abort_on_error: bool,
) -> staging.BatchResult:
    """The SQL of one batch, in the import thread. In skip mode each batch commits on its own."""
    staging.stage_batch(conn, batch)
    result = staging.check_batch(conn, merge)
    if not ((batch.errors or result.errors) and abort_on_error):
        staging.merge_batch(conn, merge, result)
        # The catalog counts rows that gained a path; updated rows kept theirs (see FieldCatalogEntry).
        path_counts = Counter(path for line in result.inserted_lines for path in batch.line_paths[line])
        _add_to_catalog(conn, merge.project_id, writer.catalog_types, path_counts)
        result.merged = True
    staging.truncate_staging(conn)
    if not abort_on_error:
        conn.commit()
    return result


def dataset_import_start(
    *, principal: Principal, dataset: Dataset, uri: str, options: ImportOptions, owns_upload: bool = False
) -> Job:
    """Queue an import job; options, and whether this tenant may read the source at all, are checked now so a
    typo or another tenant's folder or bucket is a 400, not a failed job. With `owns_upload`, the job deletes its
    upload:// source when it ends."""
    validate_import_options(options)
    source_check(uri)
    if options.images_uri:
        images_uri_check(options.images_uri)
    elif options.format == "coco" and uri.startswith(f"{UPLOAD_SCHEME}://"):
        # An uploaded file has no folder of its own: its relative file_names would resolve nowhere.
        raise ApplicationError(
            "An uploaded COCO file needs images_uri, the folder or prefix its file_names are in.",
            {"fields": {"images_uri": ["Required when the COCO file is uploaded."]}},
        )
    if dataset.status == Dataset.Status.DELETING:
        raise ApplicationError(f"Dataset {dataset.pk} is being deleted.")
    params = {"dataset_id": dataset.pk, "uri": uri, "options": asdict(options)}
    if owns_upload:
        params[OWNED_UPLOAD_PARAM] = uri
    return job_create(principal=principal, kind=DATASET_IMPORT_JOB_KIND, params=params)
