"""Load the datasets generator's rows into a bench tenant fast: COPY into the tenant's own tables, indexes after.

The import service (bench/import.py --preload) runs at ~2,500 datarows/s on this VM, 400 s per million; this
loader writes the same rows, labels, predictions, classes, model versions and field catalog with bare COPY
(foreign-key triggers off for the load, the secondary indexes dropped and rebuilt afterwards): 158 s for 1M rows
on this VM under load, conversion included. `replicate` builds a larger tenant from a loaded one inside PostgreSQL.
The tenant is kept, so a later run at the same size reuses it.
"""

import io
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from generate import CLASSES, MODELS  # noqa: E402

TABLES = ("datasets_datarow", "datasets_label", "predictions_prediction")
COLUMNS = {
    "datasets_datarow": "id, dataset_id, external_id, uri, media_type, width, height, metadata, tags, created_at, "
    "updated_at",
    "datasets_label": "datarow_id, ontology_class_id, kind, x, y, w, h, area, polygon, attributes, source, "
    "created_at, updated_at, updated_by",
    "predictions_prediction": "datarow_id, model_version_id, ontology_class_id, kind, score, x, y, w, h, area, "
    "polygon, attributes, created_at",
}
STAMP = "2026-01-01 00:00:00+00"


def bench_schema(rows: int) -> str:
    return f"bench_search_{rows}"


def loaded_project(schema: str, rows: int):
    """The bench project of a tenant that already holds `rows` datarows, or None."""
    from datasets.models import Dataset
    from tenancy.models import Tenant

    if not Tenant.objects.filter(schema_name=schema, status=Tenant.Status.ACTIVE).exists():
        return None
    from tenancy.context import tenant_scope

    with tenant_scope(schema):
        dataset = Dataset.objects.filter(name="bench", datarow_count=rows).select_related("project").first()
        return dataset.project if dataset else None


def _tsv_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _write_tsv(manifest: Path, folder: Path, dataset_id: int, class_ids: dict, model_ids: dict) -> tuple[dict, Counter]:
    from datasets.importers.records import metadata_leaves

    files = {table: folder / f"{table}.tsv" for table in TABLES}
    types: dict[str, str] = {}
    path_rows: Counter = Counter()
    with (
        open(manifest, "rb") as source,
        open(files["datasets_datarow"], "w") as rows,
        open(files["datasets_label"], "w") as labels,
        open(files["predictions_prediction"], "w") as predictions,
    ):
        for datarow_id, line in enumerate(source, 1):
            r = orjson.loads(line)
            for path, kind in metadata_leaves(r["metadata"]).items():
                types.setdefault(path, kind)
                path_rows[path] += 1
            tags = "{" + ",".join(f'"{tag}"' for tag in sorted(set(r["tags"]))) + "}"
            rows.write(
                f"{datarow_id}\t{dataset_id}\t{r['external_id']}\t{r['uri']}\timage\t{r['width']}\t"
                f"{r['height']}\t{_tsv_text(orjson.dumps(r['metadata']).decode())}\t{tags}\t{STAMP}\t{STAMP}\n"
            )
            for item in r["labels"]:
                x, y, w, h = item["box"]
                labels.write(
                    f"{datarow_id}\t{class_ids[item['class']]}\tbox\t{x}\t{y}\t{w}\t{h}\t{w * h}\t\\N\t"
                    f"{orjson.dumps(item['attributes']).decode()}\timport:bench\t{STAMP}\t{STAMP}\tbench\n"
                )
            for item in r["predictions"]:
                x, y, w, h = item["box"]
                predictions.write(
                    f"{datarow_id}\t{model_ids[(item['model'], item['version'])]}\t"
                    f"{class_ids[item['class']]}\tbox\t{item['score']}\t{x}\t{y}\t{w}\t{h}\t{w * h}\t"
                    f"\\N\t{{}}\t{STAMP}\n"
                )
    return types, path_rows


def _fresh_tenant(schema: str):
    """A new tenant `schema` (any earlier one dropped) with the bench project, its dataset, classes and models."""
    from django.db import connection

    from datasets.models import Dataset, ModelVersion
    from datasets.services.ontology import ontology_class_create
    from projects.models import Project
    from tenancy.context import tenant_scope
    from tenancy.models import Tenant
    from tenancy.services import tenant_provision

    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    Tenant.objects.filter(schema_name=schema).delete()
    tenant_provision(schema_name=schema, name=schema)
    with tenant_scope(schema):
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        dataset = Dataset.objects.create(project=project, name="bench", created_by="bench")
        for name in CLASSES:
            ontology_class_create(project=project, name=name)
        class_ids = dict(project.ontology.values_list("name", "id"))
        model_ids = {
            (name, version): ModelVersion.objects.create(project=project, name=name, version=version).pk
            for name, version in MODELS
        }
    return project, dataset, class_ids, model_ids


def _bulk_write(schema: str, rows: int, write, log) -> dict:
    """Drop the secondary indexes, run `write(cursor)` with foreign-key triggers off, rebuild and analyse.

    `write` fills the three tables and returns their row counts."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = %s "
            "AND tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conname = i.indexname)",
            [schema, list(TABLES)],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{schema}"."{name}"')
        started = time.monotonic()
        # Foreign keys hold by construction (ids written by the caller); their per-row triggers would double the load.
        cursor.execute("SET session_replication_role = replica")
        counts = write(cursor)
        cursor.execute("SET session_replication_role = DEFAULT")
        log(f"copied {counts} in {time.monotonic() - started:.0f}s")
        started = time.monotonic()
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("SELECT setval(pg_get_serial_sequence('datasets_datarow', 'id'), %s)", [rows])
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
        log(f"indexes built and tables analysed in {time.monotonic() - started:.0f}s")
    return counts


def _finish(schema: str, project, dataset, counts: dict, catalog: dict[str, tuple[str, int]], log) -> None:
    """The field catalog and the dataset's counts, then the datetime metadata indexes, the attribute catalog and its
    indexes."""
    from django.core.management import call_command

    from datasets.models import Dataset, FieldCatalogEntry
    from tenancy.context import tenant_scope

    with tenant_scope(schema):
        FieldCatalogEntry.objects.bulk_create(
            FieldCatalogEntry(project=project, path=path, field_type=kind, row_count=row_count)
            for path, (kind, row_count) in catalog.items()
        )
        Dataset.objects.filter(pk=dataset.pk).update(
            datarow_count=counts["datasets_datarow"],
            label_count=counts["datasets_label"],
            prediction_count=counts["predictions_prediction"],
        )
    # What an operator runs after imports bring datetime paths, naming the text paths users MATCH on.
    started = time.monotonic()
    call_command("search_metadata_indexes", schema=[schema], text=["caption"], stdout=io.StringIO())
    log(f"datetime metadata paths and the caption (MATCH) indexed in {time.monotonic() - started:.0f}s")
    # The attribute catalog of the stored labels (what the imports would have filled), and its typed indexes.
    started = time.monotonic()
    call_command("datasets_attribute_catalog", schema=[schema], stdout=io.StringIO())
    call_command("search_attribute_indexes", schema=[schema], stdout=io.StringIO())
    log(f"label attributes catalogued and indexed in {time.monotonic() - started:.0f}s")


def load(*, schema: str, manifest: Path, rows: int, log=print):
    """A fresh tenant `schema` holding the manifest's rows in one dataset of one project; returns the project."""
    from tenancy.context import tenant_scope

    project, dataset, class_ids, model_ids = _fresh_tenant(schema)
    with tenant_scope(schema):
        started = time.monotonic()
        types, path_rows = _write_tsv(manifest, manifest.parent, dataset.pk, class_ids, model_ids)
        log(f"converted to COPY text in {time.monotonic() - started:.0f}s")

        def write(cursor) -> dict:
            counts = {}
            for table in TABLES:
                with (
                    open(manifest.parent / f"{table}.tsv", "rb") as data,
                    cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy,
                ):
                    while chunk := data.read(1 << 20):
                        copy.write(chunk)
                counts[table] = cursor.rowcount
            return counts

        counts = _bulk_write(schema, rows, write, log)
        for table in TABLES:
            (manifest.parent / f"{table}.tsv").unlink()
    _finish(schema, project, dataset, counts, {path: (kind, path_rows[path]) for path, kind in types.items()}, log)
    return project


def replicate(*, schema: str, source: str, source_rows: int, copies: int, log=print):
    """A fresh tenant `schema` holding `copies` copies of the loaded tenant `source` (`source_rows` datarows).

    Server-side INSERT ... SELECT, no generation or conversion: copy k shifts every datarow id by k * source_rows
    and names it as the generator would name row id - 1 + k * source_rows (external_id, uri); labels and
    predictions follow their datarow, classes and model versions are matched by name. Metadata, tags, boxes and
    scores repeat the source's, so every query matches `copies` times as many rows. Each copy reads the source
    in its physical order (its id order, as loaded), so ids stay in insertion order as in a real import."""
    from tenancy.context import tenant_scope

    project, dataset, _, _ = _fresh_tenant(schema)
    index = "(substr(d.external_id, 5)::bigint + %(shift)s)"
    datarow_sql = (
        f"INSERT INTO datasets_datarow ({COLUMNS['datasets_datarow']}) "
        f"SELECT d.id + %(shift)s, %(dataset)s, 'img-' || lpad({index}::text, 9, '0'), "
        f"'s3://cv-bench/images/' || lpad(({index} %% 1000)::text, 3, '0') || '/' "
        f"|| lpad({index}::text, 9, '0') || '.jpg', d.media_type, d.width, d.height, d.metadata, d.tags, "
        f'd.created_at, d.updated_at FROM "{source}".datasets_datarow d'
    )
    classes = (
        f'JOIN "{source}".datasets_ontologyclass sc ON sc.id = t.ontology_class_id '
        f"JOIN datasets_ontologyclass c ON c.name = sc.name"
    )
    label_sql = (
        "INSERT INTO datasets_label (datarow_id, ontology_class_id, kind, x, y, w, h, area, polygon, "
        "attributes, source, created_at, updated_at, updated_by) SELECT t.datarow_id + %(shift)s, c.id, "
        "t.kind, t.x, t.y, t.w, t.h, t.area, t.polygon, t.attributes, t.source, t.created_at, t.updated_at, "
        f't.updated_by FROM "{source}".datasets_label t {classes}'
    )
    prediction_sql = (
        "INSERT INTO predictions_prediction (datarow_id, model_version_id, ontology_class_id, kind, "
        "score, x, y, w, h, area, polygon, attributes, created_at) SELECT t.datarow_id + %(shift)s, m.id, "
        "c.id, t.kind, t.score, t.x, t.y, t.w, t.h, t.area, t.polygon, t.attributes, t.created_at "
        f'FROM "{source}".predictions_prediction t {classes} '
        f'JOIN "{source}".predictions_modelversion sm ON sm.id = t.model_version_id '
        "JOIN predictions_modelversion m ON m.name = sm.name AND m.version = sm.version"
    )

    def write(cursor) -> dict:
        counts = dict.fromkeys(TABLES, 0)
        for copy in range(copies):
            started = time.monotonic()
            for table, sql in zip(TABLES, (datarow_sql, label_sql, prediction_sql), strict=True):
                cursor.execute(sql, {"shift": copy * source_rows, "dataset": dataset.pk})
                counts[table] += cursor.rowcount
            log(f"copy {copy + 1}/{copies} in {time.monotonic() - started:.0f}s")
        return counts

    with tenant_scope(schema):
        counts = _bulk_write(schema, source_rows * copies, write, log)
    from datasets.models import FieldCatalogEntry

    with tenant_scope(source):
        catalog = {
            path: (kind, row_count * copies)
            for path, kind, row_count in FieldCatalogEntry.objects.values_list("path", "field_type", "row_count")
        }
    _finish(schema, project, dataset, counts, catalog, log)
    return project
