"""The import pipeline itself (no worker): formats, validation, modes, abort, cancel, idempotency."""

import pytest

from datasets.importers.records import LineError
from datasets.models import DataRow, Dataset, FieldCatalogEntry, Label, ModelVersion, OntologyClass, Prediction
from datasets.services.imports import ImportAborted, ImportOptions, dataset_import_run
from tests.factories import model_version_make


def _run(dataset, uri, progress=None, **options):
    return dataset_import_run(
        dataset=dataset,
        uri=uri,
        options=ImportOptions(**options),
        source="import:test",
        user="tester",
        progress=progress or (lambda counters, errors: None),
    )


def _snapshot(dataset):
    dataset.refresh_from_db()
    return (
        sorted(DataRow.objects.filter(dataset=dataset).values_list("external_id", "uri", "metadata", "tags")),
        sorted(
            Label.objects.filter(datarow__dataset=dataset).values_list(
                "datarow__external_id", "ontology_class__name", "x"
            )
        ),
        (dataset.datarow_count, dataset.label_count, dataset.prediction_count),
    )


def _row(i, **extra):
    return {"external_id": f"img-{i}", "uri": f"s3://bucket/{i}.jpg", "width": 640, "height": 480, **extra}


def test_jsonl_import_stores_rows_labels_predictions_and_catalog(tenant_dataset, write_jsonl):
    uri = write_jsonl(
        [
            _row(
                1,
                metadata={"weather": "rain", "capture": {"gps": {"lat": 48.1}, "time": "2024-05-01T10:00:00Z"}},
                tags=["night", "city"],
                labels=[
                    {"class": "vehicle/car", "box": [10, 20, 100, 50], "attributes": {"occluded": True}},
                    {"class": "daytime"},
                ],
                predictions=[
                    {"model": "yolo", "version": "1", "class": "vehicle/car", "score": 0.9, "box": [12, 20, 98, 50]}
                ],
            ),
            _row(2, metadata={"weather": "sun"}),
        ]
    )
    counters = _run(tenant_dataset, uri, create_classes=True)

    assert (counters.inserted, counters.labels, counters.predictions, counters.errors) == (2, 2, 1, 0)
    row = DataRow.objects.get(dataset=tenant_dataset, external_id="img-1")
    assert row.tags == ["city", "night"]
    assert row.metadata["capture"]["gps"]["lat"] == 48.1
    car = Label.objects.get(datarow=row, kind="box")
    assert (car.ontology_class.name, car.x, car.area, car.attributes) == ("vehicle/car", 10, 5000, {"occluded": True})
    assert Label.objects.get(datarow=row, kind="classification").ontology_class.name == "daytime"
    # ancestors of a class path join the ontology with their parent links
    assert OntologyClass.objects.get(project=tenant_dataset.project, name="vehicle/car").parent.name == "vehicle"
    prediction = Prediction.objects.get(datarow=row)
    assert (prediction.model_version.name, prediction.model_version.version, prediction.score) == ("yolo", "1", 0.9)
    catalog = dict(FieldCatalogEntry.objects.filter(project=tenant_dataset.project).values_list("path", "field_type"))
    assert catalog == {"weather": "string", "capture.gps.lat": "number", "capture.time": "datetime"}
    assert FieldCatalogEntry.objects.get(project=tenant_dataset.project, path="weather").row_count == 2
    tenant_dataset.refresh_from_db()
    assert (tenant_dataset.datarow_count, tenant_dataset.label_count, tenant_dataset.prediction_count) == (2, 2, 1)


def test_reimport_updates_instead_of_duplicating(tenant_dataset, write_jsonl):
    _run(
        tenant_dataset,
        write_jsonl([_row(1, labels=[{"class": "cat"}, {"class": "dog"}]), _row(2)]),
        create_classes=True,
    )
    counters = _run(
        tenant_dataset,
        write_jsonl([_row(1, uri="s3://bucket/new.jpg", labels=[{"class": "cat"}]), _row(3)], name="again.jsonl"),
        create_classes=True,
    )

    assert (counters.inserted, counters.updated) == (1, 1)
    assert DataRow.objects.filter(dataset=tenant_dataset).count() == 3
    assert DataRow.objects.get(dataset=tenant_dataset, external_id="img-1").uri == "s3://bucket/new.jpg"
    assert list(
        Label.objects.filter(datarow__external_id="img-1", datarow__dataset=tenant_dataset).values_list(
            "ontology_class__name", flat=True
        )
    ) == ["cat"]
    tenant_dataset.refresh_from_db()
    assert (tenant_dataset.datarow_count, tenant_dataset.label_count) == (3, 1)


def test_skip_existing_and_fail_on_existing_modes(tenant_dataset, write_jsonl):
    _run(tenant_dataset, write_jsonl([_row(1)]))
    skipped = _run(
        tenant_dataset, write_jsonl([_row(1, uri="s3://x/changed.jpg"), _row(2)], name="b.jsonl"), mode="skip_existing"
    )
    assert (skipped.inserted, skipped.skipped) == (1, 1)
    assert DataRow.objects.get(dataset=tenant_dataset, external_id="img-1").uri == "s3://bucket/1.jpg"

    seen: list[LineError] = []
    failed = _run(
        tenant_dataset,
        write_jsonl([_row(3), _row(1)], name="c.jsonl"),
        mode="fail_on_existing",
        progress=lambda counters, errors: seen.extend(errors),
    )
    assert failed.inserted == 1
    assert seen == [LineError(2, "external_id", "external_id 'img-1' already exists in the dataset")]


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (
            b'{"external_id": "a", "uri": "x", "width": 10, "height": 10, "labels": [{"class": "cat", "box": [5, 5, 20, 2]}]}',
            "labels[0].box",
            "right edge",
        ),
        (b'{"external_id": "a"}', "uri", "is required"),
        (b'{"external_id": "a", "uri": "x", "width": -3}', "width", "Expected a whole number >= 1"),
        (b'{"external_id": "a", "uri": "x", "tags": "nope"}', "tags", "Expected a list, got a string"),
        (
            b'{"external_id": "a", "uri": "x", "predictions": [{"class": "cat", "score": 1.5, "model": "m", "version": "1"}]}',
            "predictions[0].score",
            "<= 1.0",
        ),
        (
            b'{"external_id": "a", "uri": "x", "labels": [{"class": "cat", "polygon": [[0, 0], [1, 1]]}]}',
            "labels[0].polygon",
            "with a length >= 3",
        ),
        (b'{"external_id": "a", "uri": "x" ', "(line)", "not valid JSON"),
        (b'{"external_id": "caf\xe9", "uri": "x"}', "(line)", "not valid UTF-8"),
        (b"[1, 2]", "(line)", "JSON object"),
        (b'{"external_id": "a", "uri": "x\\u0000y"}', "uri", "NUL"),
    ],
)
def test_each_bad_line_is_reported_with_line_field_and_reason(tenant_dataset, write_jsonl, line, field, reason):
    seen: list[LineError] = []
    counters = _run(
        tenant_dataset,
        write_jsonl([_row(0), line, _row(2)]),
        create_classes=True,
        progress=lambda c, errors: seen.extend(errors),
    )
    assert counters.inserted == 2
    assert len(seen) == 1
    assert (seen[0].line, seen[0].field) == (2, field)
    assert reason in seen[0].message


def test_huge_line_is_reported_without_reading_it_whole(tenant_dataset, write_jsonl, settings):
    settings.IMPORT_MAX_LINE_BYTES = 1000
    seen: list[LineError] = []
    huge = b'{"external_id": "big", "uri": "' + b"x" * 5000 + b'"}'
    counters = _run(tenant_dataset, write_jsonl([_row(1), huge, _row(3)]), progress=lambda c, e: seen.extend(e))
    assert counters.inserted == 2
    assert [(e.line, e.field) for e in seen] == [(2, "(line)")]


def test_duplicate_ids_within_a_file_are_found_in_sql_across_batches(tenant_dataset, write_jsonl, settings):
    settings.IMPORT_BATCH_LINES = 2
    seen: list[LineError] = []
    counters = _run(
        tenant_dataset, write_jsonl([_row(1), _row(2), _row(3), _row(1), _row(2)]), progress=lambda c, e: seen.extend(e)
    )
    assert counters.inserted == 3
    assert [(e.line, e.message) for e in seen] == [
        (4, "duplicate external_id 'img-1' (first seen on line 1)"),
        (5, "duplicate external_id 'img-2' (first seen on line 2)"),
    ]


def test_unknown_class_is_a_bad_line_unless_classes_may_be_created(tenant_dataset, write_jsonl):
    seen: list[LineError] = []
    counters = _run(
        tenant_dataset,
        write_jsonl([_row(1, labels=[{"class": "unicorn"}]), _row(2)]),
        progress=lambda c, e: seen.extend(e),
    )
    assert counters.inserted == 1
    assert seen == [LineError(1, "labels[0].class", "class 'unicorn' is not in the project's ontology")]


def test_metadata_type_conflicting_with_the_catalog_is_a_bad_line(tenant_dataset, write_jsonl):
    _run(tenant_dataset, write_jsonl([_row(1, metadata={"speed": 12})]))
    seen: list[LineError] = []
    _run(
        tenant_dataset,
        write_jsonl([_row(2, metadata={"speed": "fast"})], name="b.jsonl"),
        progress=lambda c, e: seen.extend(e),
    )
    assert [(e.line, e.field) for e in seen] == [(1, "metadata.speed")]
    assert "number in the project's field catalog" in seen[0].message


def test_abort_mode_leaves_the_dataset_exactly_as_before(tenant_dataset, write_jsonl, settings):
    _run(tenant_dataset, write_jsonl([_row(1, labels=[{"class": "cat"}])]), create_classes=True)
    before = _snapshot(tenant_dataset)
    settings.IMPORT_BATCH_LINES = 2
    # a bad line in the third batch, after two good batches were merged
    records = [_row(i, labels=[{"class": "cat"}]) for i in range(2, 7)] + [{"external_id": "broken"}]
    with pytest.raises(ImportAborted, match="line 6, uri is required"):
        _run(tenant_dataset, write_jsonl(records, name="b.jsonl"), on_error="abort")
    assert _snapshot(tenant_dataset) == before


def test_abort_mode_cancel_rolls_back_everything(tenant_dataset, write_jsonl, settings):
    before = _snapshot(tenant_dataset)
    settings.IMPORT_BATCH_LINES = 2

    def cancel_after_second_batch(counters, errors):
        if counters.inserted >= 4:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        _run(
            tenant_dataset,
            write_jsonl([_row(i) for i in range(10)]),
            on_error="abort",
            progress=cancel_after_second_batch,
        )
    assert _snapshot(tenant_dataset) == before


def test_skip_mode_cancel_commits_whole_batches_and_counts_them(tenant_dataset, write_jsonl, settings):
    settings.IMPORT_BATCH_LINES = 3
    committed = []

    def cancel_after_two_batches(counters, errors):
        committed.append(counters.committed_rows)
        if len(committed) == 2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        _run(tenant_dataset, write_jsonl([_row(i) for i in range(10)]), progress=cancel_after_two_batches)
    tenant_dataset.refresh_from_db()
    assert committed == [3, 6]
    assert DataRow.objects.filter(dataset=tenant_dataset).count() == 6 == tenant_dataset.datarow_count


def test_csv_manifest_with_metadata_columns(tenant_dataset, import_root):
    path = import_root / "manifest.csv"
    path.write_text(
        "external_id,uri,width,height,tags,metadata.weather,metadata.camera.iso,labels\n"
        'a,s3://b/a.jpg,640,480,day|city,rain,400,"[{""class"": ""cat"", ""box"": [1, 2, 3, 4]}]"\n'
        "b,s3://b/b.jpg,,,,,,\n"
        "c,s3://b/c.jpg,abc,,,,,\n"
    )
    seen: list[LineError] = []
    counters = _run(tenant_dataset, str(path), format="csv", create_classes=True, progress=lambda c, e: seen.extend(e))
    assert counters.inserted == 2
    a = DataRow.objects.get(dataset=tenant_dataset, external_id="a")
    assert (a.tags, a.metadata, a.width) == (["city", "day"], {"weather": "rain", "camera": {"iso": 400}}, 640)
    assert Label.objects.get(datarow=a).w == 3
    assert [(e.line, e.field) for e in seen] == [(4, "width")]


def test_two_imports_into_one_dataset_are_refused_while_one_runs(tenant_dataset, write_jsonl):
    from mlops.exceptions import Conflict

    first = write_jsonl([_row(1), _row(2)])
    second = write_jsonl([_row(3)], name="second.jsonl")

    def start_second(counters, errors):
        with pytest.raises(Conflict, match="busy"):
            _run(tenant_dataset, second)

    _run(tenant_dataset, first, progress=start_second)
    assert sorted(DataRow.objects.filter(dataset=tenant_dataset).values_list("external_id", flat=True)) == [
        "img-1",
        "img-2",
    ]
    # once the first import ended, the lock is free again
    assert _run(tenant_dataset, second).inserted == 1


def test_local_paths_outside_the_tenant_folder_are_refused(tenant_dataset, import_root):
    from mlops.storage import StorageError

    with pytest.raises(StorageError, match="outside this tenant's folder"):
        _run(tenant_dataset, "/etc/passwd")
    assert Dataset.objects.get(pk=tenant_dataset.pk).datarow_count == 0
    assert not ModelVersion.objects.filter(project=tenant_dataset.project).exists()


def test_an_import_and_a_dataset_delete_never_run_at_once(tenant_dataset, write_jsonl):
    from datasets.services.datasets import dataset_delete_rows
    from mlops.exceptions import Conflict

    # while an import runs, the delete is refused
    def delete_during_import(counters, errors):
        with pytest.raises(Conflict, match="busy"):
            dataset_delete_rows(dataset_id=tenant_dataset.pk, progress=lambda deleted: None)

    _run(tenant_dataset, write_jsonl([_row(1), _row(2)]), progress=delete_during_import)
    assert Dataset.objects.filter(pk=tenant_dataset.pk).exists()

    # while a delete runs, the import is refused, and the delete then removes everything
    refused = []

    def import_during_delete(deleted):
        with pytest.raises(Conflict, match="busy"):
            _run(tenant_dataset, write_jsonl([_row(3)], name="late.jsonl"))
        refused.append(deleted)

    assert dataset_delete_rows(dataset_id=tenant_dataset.pk, progress=import_during_delete) == 2
    assert refused == [2]
    assert not Dataset.objects.filter(pk=tenant_dataset.pk).exists()
    assert not DataRow.objects.filter(dataset_id=tenant_dataset.pk).exists()
    assert not Label.objects.filter(datarow__dataset_id=tenant_dataset.pk).exists()


def test_classes_and_model_versions_a_batch_refers_to_cannot_be_deleted_under_it(tenant_dataset, write_jsonl, settings):
    """The import session skips the row-by-row foreign key triggers; the classes and model versions a merged
    batch refers to stay locked until it commits, so a delete waits instead of orphaning labels."""
    from django.db import OperationalError, connection, transaction

    settings.IMPORT_BATCH_LINES = 2
    OntologyClass.objects.create(project=tenant_dataset.project, name="cat")
    model_version_make(project=tenant_dataset.project, name="m", version="1")
    records = [
        _row(i, labels=[{"class": "cat"}], predictions=[{"model": "m", "version": "1", "class": "cat", "score": 0.5}])
        for i in range(4)
    ]
    refused = []

    def delete(table: str, name: str) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '300ms'")
            cursor.execute(
                f"DELETE FROM {table} WHERE project_id = %s AND name = %s", [tenant_dataset.project_id, name]
            )

    def delete_under_the_first_batch(counters, errors):
        if refused:
            return
        for table, name in (("datasets_ontologyclass", "cat"), ("predictions_modelversion", "m")):
            with pytest.raises(OperationalError, match="lock timeout"):
                delete(table, name)
        refused.append(True)

    counters = _run(tenant_dataset, write_jsonl(records), on_error="abort", progress=delete_under_the_first_batch)
    assert refused and (counters.labels, counters.predictions) == (4, 4)
    assert Label.objects.filter(datarow__dataset=tenant_dataset, ontology_class__name="cat").count() == 4
    assert Prediction.objects.filter(datarow__dataset=tenant_dataset, model_version__name="m").count() == 4


def test_an_import_session_without_the_privilege_keeps_the_foreign_key_triggers(committed_tenants):
    import psycopg
    from django.db import connections

    from mlops.bulk_writes import skip_row_by_row_foreign_key_checks

    with psycopg.connect(**connections["default"].get_connection_params()) as conn:
        skip_row_by_row_foreign_key_checks(conn)
        assert conn.execute("SHOW session_replication_role").fetchone()[0] == "replica"  # the test role is a superuser
        conn.execute("RESET session_replication_role")
        conn.execute("DO $$ BEGIN CREATE ROLE import_unprivileged; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("SET ROLE import_unprivileged")
        conn.commit()
        skip_row_by_row_foreign_key_checks(conn)
        assert conn.execute("SELECT current_user, current_setting('session_replication_role')").fetchone() == (
            "import_unprivileged",
            "origin",
        )


def test_a_manifest_is_imported_from_an_allowed_http_server(
    tenant_dataset, import_root, files_server, allow_files_server
):
    files_server.files["/manifest.jsonl"] = (
        b'{"external_id": "a", "uri": "s3://b/a.jpg"}\nnot json\n{"external_id": "b", "uri": "s3://b/b.jpg"}\n'
    )

    counters = _run(tenant_dataset, f"{files_server.url}/manifest.jsonl")

    assert (counters.lines, counters.inserted, counters.errors) == (3, 2, 1)
    assert sorted(DataRow.objects.filter(dataset=tenant_dataset).values_list("external_id", flat=True)) == ["a", "b"]
