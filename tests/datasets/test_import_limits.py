"""Hostile manifests: nesting, size and count limits become per-line errors (or abort the import), never a crash."""

import orjson
import pytest

from datasets.importers.json_depth import JsonDepth
from datasets.models import DataRow
from datasets.services.imports import ImportAborted

DEEP = 1000


def _row(i, **extra):
    return {"external_id": f"img-{i}", "uri": f"s3://bucket/{i}.jpg", **extra}


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _external_ids(dataset):
    return sorted(DataRow.objects.filter(dataset=dataset).values_list("external_id", flat=True))


def test_a_line_nested_too_deep_is_a_line_error_and_the_good_lines_are_committed(
    tenant_dataset, write_jsonl, run_import
):
    deep = b'{"external_id": "deep", "uri": "x", "metadata": ' + _nested(DEEP) + b"}"

    counters, errors = run_import(write_jsonl([_row(1), deep, _row(3)]))

    assert (counters.inserted, counters.errors) == (2, 1)
    assert [(e.line, e.field) for e in errors] == [(2, "(line)")]
    assert "deeper than 32 levels" in errors[0].message and "IMPORT_MAX_JSON_DEPTH" in errors[0].message
    assert _external_ids(tenant_dataset) == ["img-1", "img-3"]


def test_a_line_nested_too_deep_aborts_an_abort_mode_import_with_its_error(tenant_dataset, write_jsonl, run_import):
    deep = b'{"external_id": "deep", "uri": "x", "labels": [{"class": "a", "attributes": ' + _nested(DEEP) + b"}]}"

    with pytest.raises(ImportAborted, match="line 2, \\(line\\) nests deeper than 32 levels"):
        run_import(write_jsonl([_row(1), deep]), on_error="abort", create_classes=True)
    assert _external_ids(tenant_dataset) == []


def test_depth_follows_the_setting(tenant_dataset, write_jsonl, run_import, settings):
    settings.IMPORT_MAX_JSON_DEPTH = 3
    # the row, its metadata and `a` are three levels; `b` is a fourth
    counters, errors = run_import(
        write_jsonl([_row(1, metadata={"a": {"b": 1}}), _row(2, metadata={"a": {"b": {"c": 1}}})])
    )
    assert counters.inserted == 1
    assert [(e.line, e.message) for e in errors] == [
        (2, "nests deeper than 3 levels (the limit is IMPORT_MAX_JSON_DEPTH)")
    ]


def test_a_metadata_cell_nested_too_deep_is_a_line_error_of_its_column(tenant_dataset, import_root, run_import):
    path = import_root / "manifest.csv"
    deep_cell = _nested(DEEP).decode().replace('"', '""')
    path.write_text(f'external_id,uri,metadata\na,s3://b/a.jpg,{{}}\nb,s3://b/b.jpg,"{deep_cell}"\nc,s3://b/c.jpg,\n')

    counters, errors = run_import(str(path), format="csv")

    assert counters.inserted == 2
    assert [(e.line, e.field) for e in errors] == [(3, "metadata")]
    assert "IMPORT_MAX_JSON_DEPTH" in errors[0].message
    assert _external_ids(tenant_dataset) == ["a", "c"]


def test_csv_metadata_paths_deeper_than_the_limit_are_a_header_error(tenant_dataset, import_root, run_import):
    column = "metadata." + ".".join(["k"] * DEEP)
    path = import_root / "manifest.csv"
    path.write_text(f"external_id,uri,{column}\na,s3://b/a.jpg,1\n")

    counters, errors = run_import(str(path), format="csv")

    assert counters.inserted == 0
    assert [(e.line, e.field) for e in errors] == [(1, column)]


def test_a_metadata_column_inside_a_metadata_cell_value_is_a_line_error(tenant_dataset, import_root, run_import):
    path = import_root / "manifest.csv"
    path.write_text(
        'external_id,uri,metadata,metadata.a.b\na,s3://b/a.jpg,"{""a"": 5}",1\nb,s3://b/b.jpg,"{""a"": {""c"": 2}}",1\n'
    )

    counters, errors = run_import(str(path), format="csv")

    assert counters.inserted == 1
    assert [(e.line, e.field) for e in errors] == [(2, "metadata.a.b")]
    assert DataRow.objects.get(dataset=tenant_dataset, external_id="b").metadata == {"a": {"b": 1, "c": 2}}


def test_line_length_labels_and_metadata_fields_per_row_follow_their_settings(
    tenant_dataset, write_jsonl, run_import, settings
):
    settings.IMPORT_MAX_LINE_BYTES = 300
    settings.IMPORT_MAX_ITEMS_PER_ROW = 2
    settings.IMPORT_MAX_METADATA_KEYS = 2
    counters, errors = run_import(
        write_jsonl(
            [
                _row(1, labels=[{"class": "a"}, {"class": "b"}], metadata={"x": 1, "y": {"z": 2}}),
                _row(2, labels=[{"class": "a"}] * 3),
                _row(3, predictions=[{"class": "a", "score": 0.5, "model": "m", "version": "1"}] * 3),
                _row(4, metadata={"x": 1, "y": 2, "z": 3}),
                _row(5, uri="s3://b/" + "x" * 400),
            ]
        ),
        create_classes=True,
    )

    assert counters.inserted == 1
    assert [(e.line, e.field, e.message) for e in errors] == [
        (2, "labels", "has 3 items; the limit is 2 (IMPORT_MAX_ITEMS_PER_ROW)"),
        (3, "predictions", "has 3 items; the limit is 2 (IMPORT_MAX_ITEMS_PER_ROW)"),
        (4, "metadata", "has 3 fields; the limit is 2 (IMPORT_MAX_METADATA_KEYS)"),
        (5, "(line)", "is longer than 300 bytes (the limit is IMPORT_MAX_LINE_BYTES)"),
    ]


def test_a_coco_file_nested_too_deep_is_a_file_error_read_before_it_is_parsed(tenant_dataset, import_root, run_import):
    # ijson alone would build these 30,000 levels in ~2 GB (memory in the square of the depth), then fail the job
    levels = 30_000
    document = (
        b'{"categories": [{"id": 1, "name": "cat"}], "images": [{"id": 1, "file_name": "a.jpg"}], '
        b'"annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "extra": '
        + b"[" * levels
        + b"]" * levels
        + b"}]}"
    )
    path = import_root / "instances.json"
    path.write_bytes(document)

    counters, errors = run_import(str(path), format="coco", create_classes=True)

    assert counters.inserted == 0
    assert [(e.line, e.field) for e in errors] == [(0, "(file)")]
    assert "nests deeper than 32 levels" in errors[0].message


def test_a_coco_annotation_nested_past_what_msgspec_encodes_does_not_fail_the_job(
    tenant_dataset, import_root, run_import
):
    document = {
        "categories": [{"id": 1, "name": "cat"}],
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "extra": 0}],
    }
    path = import_root / "instances.json"
    path.write_bytes(orjson.dumps(document).replace(b'"extra":0', b'"extra":' + _nested(DEEP)))

    counters, errors = run_import(str(path), format="coco", create_classes=True)

    assert counters.inserted == 0
    assert [(e.line, e.field) for e in errors] == [(0, "(file)")]


def test_a_yolo_class_list_nested_too_deep_is_reported_on_line_0(tenant_dataset, import_root, run_import):
    root = import_root / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "data.yaml").write_text("names: " + "[" * 5000 + "]" * 5000 + "\n")

    counters, errors = run_import(str(root), format="yolo")

    assert counters.inserted == 0
    assert [(e.line, e.field, e.message) for e in errors] == [(0, "data.yaml", "is not a readable class list")]


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'{"a": "[[[{{{", "b": [[1]]}', 3),
        (b'["\\\\", ["\\"]]"]]', 2),
        (b'"[[[["', 0),
        (b'[{"k\\\\\\"[": {}}]', 3),
    ],
)
def test_the_depth_count_skips_strings_and_escapes_however_the_text_is_cut(text, depth):
    assert JsonDepth().feed(text) == depth
    for cut in range(1, len(text)):
        scanner = JsonDepth()
        scanner.feed(text[:cut])
        assert scanner.feed(text[cut:]) == depth, cut
