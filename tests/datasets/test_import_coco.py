"""COCO detection files and COCO results files, through the whole import pipeline."""

import copy
import os
import tracemalloc

import orjson
import pytest

from datasets.importers import coco
from datasets.importers.records import LineError, RecordWriter
from datasets.models import DataRow, FieldCatalogEntry, Label, OntologyClass, Prediction
from datasets.services.imports import ImportAborted, ImportOptions, validate_import_options
from mlops.exceptions import ApplicationError
from tests.conftest import TENANT_A, TENANT_B
from tests.datasets.conftest import wait_for_reader
from tests.datasets.image_files import png_bytes

COCO = {
    "info": {"description": "three images, two categories"},
    "images": [
        {"id": 10, "file_name": "a.jpg", "width": 640, "height": 480, "license": 1},
        {"id": 20, "file_name": "b.jpg", "width": 320, "height": 240, "coco_url": "http://images.example/b.jpg"},
        {"id": 30, "file_name": "c.jpg", "width": 100, "height": 100},
    ],
    "annotations": [
        {
            "id": 1,
            "image_id": 10,
            "category_id": 1,
            "bbox": [10, 20, 100, 50],
            "area": 5000,
            "iscrowd": 0,
            "segmentation": [],
        },
        {
            "id": 2,
            "image_id": 10,
            "category_id": 2,
            "bbox": [0, 0, 10, 10],
            "area": 50,
            "iscrowd": 0,
            "segmentation": [[0, 0, 10, 0, 10, 10]],
        },
        {
            "id": 3,
            "image_id": 20,
            "category_id": 1,
            "bbox": [5.5, 5, 20, 20],
            "iscrowd": 1,
            "segmentation": {"counts": [1, 2], "size": [240, 320]},
        },
    ],
    "categories": [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 2, "name": "dog", "supercategory": "animal"},
    ],
}


@pytest.fixture
def write_json(import_root):
    def write(document, name: str = "instances.json") -> str:
        path = import_root / name
        path.write_bytes(document if isinstance(document, bytes) else orjson.dumps(document))
        return str(path)

    return write


def _labels(dataset):
    return sorted(
        Label.objects.filter(datarow__dataset=dataset).values_list(
            "datarow__external_id", "ontology_class__name", "kind", "x", "y", "w", "h", "area", "polygon", "attributes"
        )
    )


def test_coco_file_becomes_datarows_with_box_polygon_and_crowd_labels(
    tenant_dataset, write_json, run_import, settings, import_root
):
    settings.IMPORT_BATCH_LINES = 2  # every array and the image batches span more than one batch
    folder = os.path.realpath(import_root)  # the file's own folder: where its file_names are

    counters, errors = run_import(write_json(COCO), format="coco", create_classes=True)

    assert errors == []
    assert (counters.inserted, counters.labels, counters.errors) == (3, 3, 0)
    rows = sorted(
        DataRow.objects.filter(dataset=tenant_dataset).values_list("external_id", "uri", "width", "height", "metadata")
    )
    assert rows == [
        ("a.jpg", f"{folder}/a.jpg", 640, 480, {"coco": {"image_id": 10}}),
        ("b.jpg", "http://images.example/b.jpg", 320, 240, {"coco": {"image_id": 20}}),
        ("c.jpg", f"{folder}/c.jpg", 100, 100, {"coco": {"image_id": 30}}),
    ]
    assert _labels(tenant_dataset) == [
        ("a.jpg", "dog", "polygon", 0, 0, 10, 10, 50, [[0, 0], [10, 0], [10, 10]], {"iscrowd": 0}),
        ("a.jpg", "person", "box", 10, 20, 100, 50, 5000, None, {"iscrowd": 0}),
        ("b.jpg", "person", "box", 5.5, 5, 20, 20, 400, None, {"iscrowd": 1}),
    ]
    # class = name; supercategory is not a parent; the category ids stay on the ontology for results files
    classes = OntologyClass.objects.filter(project=tenant_dataset.project)
    assert sorted(classes.values_list("name", "parent", "coco_category_id")) == [("dog", None, 2), ("person", None, 1)]
    entry = FieldCatalogEntry.objects.get(project=tenant_dataset.project, path="coco.image_id")
    assert (entry.field_type, entry.row_count) == ("number", 3)


def test_a_file_with_annotations_replaces_labels_and_an_image_info_file_keeps_them(
    tenant_dataset, write_json, run_import
):
    run_import(write_json(COCO), format="coco", create_classes=True)
    fewer = copy.deepcopy(COCO)
    del fewer["annotations"][0]
    image_info = {key: value for key, value in COCO.items() if key != "annotations"}

    counters, _ = run_import(write_json(fewer, "fewer.json"), format="coco")
    assert (counters.inserted, counters.updated, counters.labels) == (0, 3, 2)
    assert [label[:2] for label in _labels(tenant_dataset)] == [("a.jpg", "dog"), ("b.jpg", "person")]

    run_import(write_json(image_info, "image_info.json"), format="coco")
    assert [label[:2] for label in _labels(tenant_dataset)] == [("a.jpg", "dog"), ("b.jpg", "person")]
    tenant_dataset.refresh_from_db()
    assert (tenant_dataset.datarow_count, tenant_dataset.label_count) == (3, 2)


def _with(array: str, element: dict):
    def patch(document):
        document[array].append(element)

    return patch


def _set(array: str, index: int, key: str, value):
    def patch(document):
        document[array][index][key] = value

    return patch


@pytest.mark.parametrize(
    ("patch", "expected", "imported"),
    [
        pytest.param(
            _with("annotations", {"id": 4, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]}),
            [LineError(0, "annotations[3].image_id", "image id 99 is not in images")],
            ["a.jpg", "b.jpg", "c.jpg"],
            id="annotation of an unknown image",
        ),
        pytest.param(
            _with("annotations", {"id": 4, "image_id": 30, "category_id": 7, "bbox": [0, 0, 1, 1]}),
            [LineError(3, "annotations[3].category_id", "category id 7 is not in categories")],
            ["a.jpg", "b.jpg"],
            id="unknown category",
        ),
        pytest.param(
            _with("annotations", {"id": 4, "image_id": 30, "category_id": 1, "bbox": [90, 0, 20.5, 10]}),
            [LineError(3, "annotations[3].bbox", "extends past the image's right edge (x + width = 110.5 > 100)")],
            ["a.jpg", "b.jpg"],
            id="bbox outside the image",
        ),
        pytest.param(
            _with(
                "annotations",
                {
                    "id": 4,
                    "image_id": 30,
                    "category_id": 1,
                    "bbox": [0, 0, 10, 10],
                    "segmentation": [[0, 0, 10, 0, 10, 200]],
                },
            ),
            [
                LineError(
                    3, "annotations[3].segmentation", "extends past the image's bottom edge (y + height = 200 > 100)"
                )
            ],
            ["a.jpg", "b.jpg"],
            id="polygon outside the image",
        ),
        pytest.param(
            _with("annotations", {"id": 4, "image_id": 30, "category_id": 1, "bbox": ["1", 0, 1, 1]}),
            [LineError(3, "annotations[3].bbox[0]", "Expected a number, got a string")],
            ["a.jpg", "b.jpg"],
            id="non-numeric bbox",
        ),
        pytest.param(
            _with("annotations", {"id": 4, "image_id": 30, "category_id": 1, "bbox": [0, 0, 1]}),
            [LineError(3, "annotations[3].bbox", "Expected a list with a length >= 4")],
            ["a.jpg", "b.jpg"],
            id="bbox of three numbers",
        ),
        pytest.param(
            _with("images", {"id": 40, "file_name": "a.jpg", "width": 10, "height": 10}),
            [LineError(4, "external_id", "duplicate external_id 'a.jpg' (first seen on line 1)")],
            ["a.jpg", "b.jpg", "c.jpg"],
            id="duplicate file_name",
        ),
        pytest.param(
            _with("images", {"id": 30, "file_name": "d.jpg"}),
            [LineError(4, "images[3].id", "duplicates images[2].id")],
            ["a.jpg", "b.jpg", "c.jpg"],
            id="duplicate image id",
        ),
        pytest.param(
            _set("images", 2, "width", "wide"),
            [LineError(3, "images[2].width", "Expected `int | null`, got a string")],
            ["a.jpg", "b.jpg"],
            id="non-numeric width",
        ),
        pytest.param(
            _with("categories", {"id": 2, "name": "cat"}),
            [LineError(0, "categories[2].id", "duplicates categories[1].id")],
            ["a.jpg", "b.jpg", "c.jpg"],
            id="duplicate category id",
        ),
    ],
)
def test_each_bad_coco_element_is_reported_at_its_json_path(
    tenant_dataset, write_json, run_import, settings, patch, expected, imported
):
    settings.IMPORT_BATCH_LINES = 2
    document = copy.deepcopy(COCO)
    patch(document)

    counters, errors = run_import(write_json(document), format="coco", create_classes=True)

    assert errors == expected
    assert sorted(DataRow.objects.filter(dataset=tenant_dataset).values_list("external_id", flat=True)) == imported
    assert counters.inserted == len(imported)


def test_without_create_classes_an_unknown_category_is_named_at_its_annotation(tenant_dataset, write_json, run_import):
    counters, errors = run_import(write_json(COCO), format="coco")

    advice = "is not a class of the project's ontology; import with create_classes=true to add the file's categories"
    assert errors == [
        LineError(1, "annotations[0].category_id", f"category 'person' (id 1) {advice}"),
        LineError(1, "annotations[1].category_id", f"category 'dog' (id 2) {advice}"),
        LineError(2, "annotations[2].category_id", f"category 'person' (id 1) {advice}"),
    ]
    assert counters.inserted == 1  # c.jpg, which has no annotations
    assert not OntologyClass.objects.filter(project=tenant_dataset.project).exists()


def test_malformed_json_is_one_error_that_says_where_and_nothing_is_imported(
    tenant_dataset, write_json, run_import, monkeypatch
):
    monkeypatch.setattr(coco, "READ_BYTES", 16)
    document = b'{"categories": [{"id": 1, "name": "person"}], "images": [{"id": 1,, "file_name": "a.jpg"}]}'
    start = document.index(b",,") // 16 * 16

    counters, errors = run_import(write_json(document), format="coco")

    assert [(e.line, e.field) for e in errors] == [(0, "(file)")]
    assert errors[0].message.startswith(
        f"is not valid JSON: parse error: invalid object key (must be a string), in bytes {start}-{start + 16} near `"
    )
    assert counters.inserted == 0 == DataRow.objects.filter(dataset=tenant_dataset).count()


def test_a_truncated_file_is_reported_at_its_end(tenant_dataset, write_json, run_import):
    document = orjson.dumps(COCO)[:-30]

    _, errors = run_import(write_json(document), format="coco")

    assert errors == [LineError(0, "(file)", f"is not valid JSON: parse error: premature EOF, at byte {len(document)}")]


@pytest.mark.parametrize("missing", ["images", "categories"])
def test_a_missing_array_is_reported_and_nothing_is_imported(tenant_dataset, write_json, run_import, missing):
    document = {key: value for key, value in COCO.items() if key != missing}

    counters, errors = run_import(write_json(document), format="coco", create_classes=True)

    assert errors == [LineError(0, missing, f"is missing or empty: a COCO file lists its {missing}")]
    assert counters.inserted == 0


def test_an_image_id_typed_otherwise_in_the_catalog_stops_the_import(
    tenant_dataset, write_json, write_jsonl, run_import
):
    run_import(write_jsonl([{"external_id": "x", "uri": "x.jpg", "metadata": {"coco": {"image_id": "ten"}}}]))

    counters, errors = run_import(write_json(COCO), format="coco", create_classes=True)

    assert errors == [
        LineError(0, "metadata.coco.image_id", "is number here but string in the project's field catalog")
    ]
    assert counters.inserted == 0


def test_abort_mode_stops_at_an_annotation_of_an_unknown_image(tenant_dataset, write_json, run_import):
    document = copy.deepcopy(COCO)
    document["annotations"][1]["image_id"] = 99

    with pytest.raises(ImportAborted, match=r"line 0, annotations\[1\].image_id image id 99 is not in images"):
        run_import(write_json(document), format="coco", create_classes=True, on_error="abort")
    assert not DataRow.objects.filter(dataset=tenant_dataset).exists()
    assert not OntologyClass.objects.filter(project=tenant_dataset.project).exists()


def test_parsing_holds_one_chunk_in_memory_however_large_the_file(
    write_json, monkeypatch, committed_tenants, in_tenant_a
):
    """What the format itself keeps (ijson's read, one chunk of COPY lines) does not grow with the file; the
    joins happen in PostgreSQL."""
    monkeypatch.setattr(coco, "READ_BYTES", 16 * 1024)
    peaks = []
    for images in (500, 2000):
        document = {
            "images": [{"id": i, "file_name": f"{i:06d}.jpg", "width": 640, "height": 480} for i in range(images)],
            "annotations": [
                {
                    "id": j,
                    "image_id": j // 3,
                    "category_id": 1,
                    "bbox": [1, 2, 30, 40],
                    "segmentation": [[1, 2, 30, 2, 30, 40]],
                }
                for j in range(3 * images)
            ],
            "categories": [{"id": 1, "name": "person"}],
        }
        uri = write_json(document, f"{images}.json")
        tracemalloc.start()
        try:
            batches = sum(1 for _ in coco.coco_batches(uri, RecordWriter({}), 100))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert batches > images * 4 / 100  # every array was cut into chunks

    assert peaks[1] < peaks[0] * 1.2


RESULTS = [
    {"image_id": 10, "category_id": 1, "bbox": [10, 20, 100, 50], "score": 0.9},
    {"image_id": 20, "category_id": 2, "bbox": [1, 1, 5, 5], "score": 0.4, "segmentation": [[1, 1, 6, 1, 6, 6]]},
    {"image_id": 10, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.3},
    {"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.3},
    {"image_id": 10, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.3},
    {"image_id": 10, "category_id": 1, "bbox": [600, 0, 100, 10], "score": 0.5},
    {"image_id": 10, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.5},
]


def test_coco_results_become_predictions_of_the_named_model(tenant_dataset, write_json, run_import, settings):
    run_import(write_json(COCO), format="coco", create_classes=True)
    settings.IMPORT_BATCH_LINES = 2  # a.jpg's detections (1st and 3rd) must still land in one batch

    counters, errors = run_import(
        write_json(RESULTS, "results.json"), format="coco_results", model_name="detr", model_version="r50"
    )

    assert errors == [
        LineError(4, "[3].image_id", "image id 99 is on no datarow of this dataset (import its COCO file first)"),
        LineError(
            5, "[4].category_id", "category id 5 is on no class of the project's ontology (import its COCO file first)"
        ),
        LineError(6, "[5].bbox", "extends past the image's right edge (x + width = 700 > 640)"),
        LineError(7, "[6].score", "Expected a number <= 1.0"),
    ]
    predictions = Prediction.objects.filter(datarow__dataset=tenant_dataset)
    assert sorted(
        predictions.values_list(
            "datarow__external_id",
            "model_version__name",
            "model_version__version",
            "ontology_class__name",
            "kind",
            "score",
            "x",
            "polygon",
        )
    ) == [
        ("a.jpg", "detr", "r50", "dog", "box", 0.3, 0, None),
        ("a.jpg", "detr", "r50", "person", "box", 0.9, 10, None),
        ("b.jpg", "detr", "r50", "dog", "polygon", 0.4, 1, [[1, 1], [6, 1], [6, 6]]),
    ]
    assert (counters.predictions, counters.inserted) == (3, 0)
    assert len(_labels(tenant_dataset)) == 3  # ground truth untouched

    again, _ = run_import(
        write_json(RESULTS[:1], "again.json"), format="coco_results", model_name="detr", model_version="r50"
    )
    assert again.predictions == 1
    # a.jpg's predictions of detr@r50 were replaced; b.jpg, absent from the file, kept its own
    assert sorted(predictions.values_list("datarow__external_id", "score")) == [("a.jpg", 0.9), ("b.jpg", 0.4)]
    tenant_dataset.refresh_from_db()
    assert tenant_dataset.prediction_count == 2


def test_a_coco_annotations_file_is_not_a_results_file(tenant_dataset, write_json, run_import):
    _, errors = run_import(write_json(COCO), format="coco_results", model_name="detr", model_version="r50")

    assert [(e.line, e.field) for e in errors] == [(0, "(file)")]
    assert errors[0].message.startswith("has no detections")


def test_coco_results_need_a_model():
    with pytest.raises(ApplicationError) as raised:
        validate_import_options(ImportOptions(format="coco_results"))

    assert raised.value.extra["fields"] == {"model_name": ["Format coco_results needs model_name and model_version."]}


@pytest.mark.parametrize("format_name", ["coco", "coco_results", "yolo", "images"])
def test_the_import_api_offers_every_format(format_name):
    from datasets.apis.datasets import DatasetImportStartApi

    data = DatasetImportStartApi.InputSerializer(data={"uri": "s3://bucket/x", "format": format_name})

    assert data.is_valid(), data.errors


# --- Where the images are: relative file_names against images_uri or the file's folder, check_images, classes


def _digits(file_names: list[str]) -> dict:
    """A standard COCO file (sklearn's digits, exported): file_names relative to an images folder, categories named
    '0' to '2' with ids 0 to 2, the last one without annotations."""
    return {
        "images": [{"id": i + 1, "file_name": name, "width": 8, "height": 8} for i, name in enumerate(file_names)],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": i % 2, "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 0}
            for i in range(len(file_names))
        ],
        "categories": [{"id": i, "name": str(i), "supercategory": "digit"} for i in range(3)],
    }


def _images(folder, *names: str):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png_bytes(8, 8))
    return folder


def _served(api_client, make_token, dataset) -> list[tuple[str, int, bytes]]:
    """(external_id, status, body) of GET .../datarows/<id>/image for every datarow of `dataset`."""
    wait_for_reader()
    client = api_client(make_token(TENANT_A))
    served = []
    for row in DataRow.objects.filter(dataset=dataset).order_by("external_id"):
        response = client.get(f"/api/v1/projects/{dataset.project_id}/datasets/{dataset.pk}/datarows/{row.pk}/image")
        body = b"".join(response.streaming_content) if response.status_code == 200 else b""
        served.append((row.external_id, response.status_code, body))
    return served


def _uris(dataset) -> list[str]:
    return list(DataRow.objects.filter(dataset=dataset).order_by("external_id").values_list("uri", flat=True))


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
def test_file_names_are_in_the_annotation_files_folder_by_default_and_their_images_are_served(
    tenant_dataset, import_root, write_json, run_import, make_token, api_client
):
    # given a COCO file next to its images, away from the tenant folder's top
    folder = _images(import_root / "digits", "train/0.png", "train/1.png")
    uri = write_json(_digits(["train/0.png", "train/1.png"]), "digits/instances.json")
    # when
    counters, errors = run_import(uri, format="coco", create_classes=True)
    # then the datarows name the images where they are, and the image endpoint serves them
    assert errors == [] and counters.inserted == 2
    real = os.path.realpath(folder)
    assert _uris(tenant_dataset) == [f"{real}/train/0.png", f"{real}/train/1.png"]
    assert _served(api_client, make_token, tenant_dataset) == [
        ("train/0.png", 200, png_bytes(8, 8)),
        ("train/1.png", 200, png_bytes(8, 8)),
    ]


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
def test_images_uri_says_where_the_file_names_are_and_categories_become_classes(
    tenant_dataset, import_root, write_json, run_import, make_token, api_client
):
    # given annotations in one folder, images in another
    images = _images(import_root / "datasets" / "digits", "0.png", "sub/1.png")
    uri = write_json(_digits(["0.png", "./sub//1.png"]), "instances.json")
    # when
    counters, errors = run_import(uri, format="coco", images_uri=str(images), create_classes=True)
    # then
    assert errors == [] and (counters.inserted, counters.labels) == (2, 2)
    real = os.path.realpath(images)
    assert _uris(tenant_dataset) == [f"{real}/sub/1.png", f"{real}/0.png"]  # by external_id: ./sub//1.png first
    # every category is a class with its id, the one no annotation uses included
    classes = OntologyClass.objects.filter(project=tenant_dataset.project)
    assert sorted(classes.values_list("name", "coco_category_id")) == [("0", 0), ("1", 1), ("2", 2)]
    assert sorted(
        Label.objects.filter(datarow__dataset=tenant_dataset).values_list(
            "datarow__external_id", "ontology_class__name"
        )
    ) == [("./sub//1.png", "1"), ("0.png", "0")]
    # (last: a request leaves this thread's connection out of the tenant)
    assert [status for _, status, _ in _served(api_client, make_token, tenant_dataset)] == [200, 200]


def test_a_file_name_that_leaves_the_images_folder_is_refused_on_its_line(
    tenant_dataset, import_root, write_json, run_import
):
    images = _images(import_root / "images", "ok.png")
    other_tenant = import_root.parent / TENANT_B / "theirs.png"
    other_tenant.write_bytes(png_bytes(8, 8))
    (images / "link.png").symlink_to(other_tenant)
    document = _digits(["ok.png", "../secret.png", str(images / "ok.png"), "s3://bucket/x.png", "link.png", "a/../.."])

    counters, errors = run_import(write_json(document), format="coco", images_uri=str(images), create_classes=True)

    absolute = "is an absolute path or URI; with images_uri, names are relative to it"
    dot_dot = "leaves the images folder ('..' is not allowed in an image path)"
    assert errors == [
        LineError(2, "images[1].file_name", dot_dot),
        LineError(3, "images[2].file_name", absolute),
        LineError(4, "images[3].file_name", absolute),
        LineError(5, "images[4].file_name", "is a link out of this tenant's folder"),
        LineError(6, "images[5].file_name", dot_dot),
    ]
    assert _uris(tenant_dataset) == [f"{os.path.realpath(images)}/ok.png"]
    assert counters.inserted == 1


def test_an_escape_in_abort_mode_leaves_nothing_behind(tenant_dataset, import_root, write_json, run_import):
    images = _images(import_root / "images", "0.png")

    with pytest.raises(ImportAborted, match=r"line 2, images\[1\].file_name leaves the images folder"):
        run_import(
            write_json(_digits(["0.png", "../1.png"])),
            format="coco",
            images_uri=str(images),
            create_classes=True,
            on_error="abort",
        )
    assert not DataRow.objects.filter(dataset=tenant_dataset).exists()
    assert not OntologyClass.objects.filter(project=tenant_dataset.project).exists()


def test_check_images_reports_each_missing_image(tenant_dataset, import_root, write_json, run_import):
    _images(import_root / "digits", "0.png", "2.png")
    uri = write_json(_digits(["0.png", "1.png", "2.png"]), "digits/instances.json")

    counters, errors = run_import(uri, format="coco", check_images=True, create_classes=True)

    assert errors == [LineError(2, "images[1].file_name", "is missing: no file '1.png' in the images folder")]
    assert counters.inserted == 2
    # without the option, nothing is looked up
    unchecked, errors = run_import(uri, format="coco", create_classes=True)
    assert errors == [] and unchecked.inserted == 1


def test_s3_file_names_resolve_against_the_files_prefix_or_images_uri_and_are_checked(
    tenant_dataset, import_root, write_json, run_import, s3_endpoint, settings
):
    import boto3

    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://acme-coco/set/"]}
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="acme-coco")
    document = _digits(["train/0.png", "train/1.png"])
    for key, body in (("set/train/0.png", png_bytes(8, 8)), ("set/instances.json", orjson.dumps(document))):
        client.put_object(Bucket="acme-coco", Key=key, Body=body)
    try:
        # the file's own prefix by default
        counters, errors = run_import("s3://acme-coco/set/instances.json", format="coco", create_classes=True)
        assert errors == [] and counters.inserted == 2
        assert _uris(tenant_dataset) == ["s3://acme-coco/set/train/0.png", "s3://acme-coco/set/train/1.png"]
        # images_uri, each object looked up with check_images
        _, errors = run_import(write_json(document), format="coco", images_uri="s3://acme-coco/set/", check_images=True)
        assert errors == [LineError(2, "images[1].file_name", "is missing: no object s3://acme-coco/set/train/1.png")]
    finally:
        for key in ("set/train/0.png", "set/instances.json"):
            client.delete_object(Bucket="acme-coco", Key=key)
        client.delete_bucket(Bucket="acme-coco")


def test_an_uploaded_file_resolves_relative_names_only_against_images_uri(tenant_dataset, import_root, run_import):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from mlops.storage import save_upload

    images = _images(import_root / "images", "0.png", "1.png")
    uri = save_upload(SimpleUploadedFile("instances.json", orjson.dumps(_digits(["0.png", "1.png"]))))

    counters, errors = run_import(uri, format="coco", create_classes=True)
    assert [(e.line, e.field) for e in errors] == [(1, "images[0].file_name"), (2, "images[1].file_name")]
    assert errors[0].message == (
        "is a relative path and there is no images folder to resolve it against: an uploaded "
        "annotation file has no folder of its own: give images_uri"
    )
    assert counters.inserted == 0

    counters, errors = run_import(uri, format="coco", images_uri=str(images), create_classes=True)
    assert errors == [] and counters.inserted == 2


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"file": "upload"}, "images_uri"),  # an uploaded COCO file without images_uri
        ({"images_uri": "OTHER_TENANT"}, "images_uri"),
        ({"images_uri": "/etc"}, "images_uri"),
        ({"images_uri": "s3://someone-else/images/"}, "images_uri"),
        ({"images_uri": "upload://abc/x"}, "images_uri"),
        ({"images_uri": "IMAGES", "format": "jsonl"}, "images_uri"),
        ({"check_images": True, "format": "yolo"}, "check_images"),
    ],
)
def test_an_import_whose_images_cannot_be_found_is_400_naming_the_option(
    tenant_dataset, import_root, write_json, make_token, api_client, settings, body, field
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://acme-coco/"]}
    images = str(_images(import_root / "images", "0.png").parent)
    body = {"format": "coco", **body}
    if body.get("images_uri") == "OTHER_TENANT":
        body["images_uri"] = str(import_root.parent / TENANT_B)
    elif body.get("images_uri") == "IMAGES":
        body["images_uri"] = images
    if body.pop("file", None):
        body["file"] = SimpleUploadedFile("instances.json", orjson.dumps(_digits(["0.png"])))
    else:
        body["uri"] = write_json(_digits(["0.png"]))
    url = f"/api/v1/projects/{tenant_dataset.project_id}/datasets/{tenant_dataset.pk}/imports"
    wait_for_reader()

    response = api_client(make_token(TENANT_A)).post(url, body, format="multipart" if "file" in body else "json")

    assert response.status_code == 400, response.content
    assert field in response.json()["extra"]["fields"]
    uploads = settings.STORAGE_ROOT / TENANT_A / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*.json"))  # a refused upload is not kept
