"""YOLO folders (images/, labels/, a class list) through the whole import pipeline."""

import pytest

from datasets.importers.records import LineError
from datasets.models import DataRow, Label
from mlops.storage import StorageError
from tests.datasets.image_files import jpeg_header_bytes, png_bytes


@pytest.fixture
def yolo_folder(import_root):
    root = import_root / "yolo"
    for folder in ("images/train", "labels/train"):
        (root / folder).mkdir(parents=True)
    (root / "images/train/a.png").write_bytes(png_bytes(200, 100))
    (root / "images/train/b.jpg").write_bytes(jpeg_header_bytes(640, 480))
    (root / "images/c.PNG").write_bytes(png_bytes(50, 50))  # no label file: an image without objects
    # the second box sticks out left of the image and is clipped to it
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 0.5 0.2\n1 0.05 0.5 0.2 0.2\n")
    (root / "labels/train/b.txt").write_text("1 0.25 0.25 0.5 0.5\n")
    (root / "classes.txt").write_text("person\ncar\n")
    return root


def _rows(dataset):
    return sorted(DataRow.objects.filter(dataset=dataset).values_list("external_id", "uri", "width", "height"))


def _boxes(dataset):
    return sorted(
        Label.objects.filter(datarow__dataset=dataset).values_list(
            "datarow__external_id", "ontology_class__name", "kind", "x", "y", "w", "h"
        )
    )


def test_yolo_folder_imports_images_with_boxes_in_pixels(tenant_dataset, yolo_folder, run_import):
    counters, errors = run_import(str(yolo_folder), format="yolo", create_classes=True)

    assert errors == []
    assert (counters.inserted, counters.labels) == (3, 3)
    images = yolo_folder / "images"
    assert _rows(tenant_dataset) == [
        ("c.PNG", str(images / "c.PNG"), 50, 50),
        ("train/a.png", str(images / "train/a.png"), 200, 100),
        ("train/b.jpg", str(images / "train/b.jpg"), 640, 480),
    ]
    assert _boxes(tenant_dataset) == [
        ("train/a.png", "car", "box", 0, pytest.approx(40), pytest.approx(30), pytest.approx(20)),
        ("train/a.png", "person", "box", 50, pytest.approx(40), 100, pytest.approx(20)),
        ("train/b.jpg", "car", "box", 0, 0, 320, 240),
    ]


def test_an_image_whose_label_file_is_gone_loses_its_labels_on_reimport(tenant_dataset, yolo_folder, run_import):
    run_import(str(yolo_folder), format="yolo", create_classes=True)
    (yolo_folder / "labels/train/a.txt").unlink()

    counters, _ = run_import(str(yolo_folder), format="yolo")

    assert (counters.inserted, counters.updated) == (0, 3)
    assert [box[:2] for box in _boxes(tenant_dataset)] == [("train/b.jpg", "car")]


@pytest.mark.parametrize(
    ("class_file", "text"),
    [
        ("data.yaml", "path: .\ntrain: images/train\nnames: [person, car]\n"),
        ("data.yaml", "names:\n  0: person\n  1: car\n"),
        ("labels/classes.txt", "person\ncar\n"),
    ],
)
def test_classes_come_from_data_yaml_or_classes_txt(tenant_dataset, yolo_folder, run_import, class_file, text):
    (yolo_folder / "classes.txt").unlink()
    (yolo_folder / class_file).write_text(text)

    counters, errors = run_import(str(yolo_folder), format="yolo", create_classes=True)

    assert (errors, counters.inserted) == ([], 3)
    assert [box[:2] for box in _boxes(tenant_dataset)] == [
        ("train/a.png", "car"),
        ("train/a.png", "person"),
        ("train/b.jpg", "car"),
    ]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("0 0.5 0.5 0.5", "has 4 values; a YOLO line is `class cx cy w h`"),
        ("0 0.5 0.5 0.5 0.5 0.1", "has 6 values; a YOLO line is `class cx cy w h`"),
        ("2 0.5 0.5 0.1 0.1", "class 2 is not one of the 2 classes"),
        ("-1 0.5 0.5 0.1 0.1", "class -1 is not one of the 2 classes"),
        ("person 0.5 0.5 0.1 0.1", "class 'person' is not a whole number"),
        ("0 0.5 1.5 0.1 0.1", "cx cy w h must be within [0, 1], with w and h above 0"),
        ("0 0.5 0.5 -0.1 0.1", "cx cy w h must be within [0, 1], with w and h above 0"),
        ("0 0.5 0.5 0 0.1", "cx cy w h must be within [0, 1], with w and h above 0"),
        ("0 0.5 0.5 nan 0.1", "cx cy w h must be within [0, 1], with w and h above 0"),
        ("0 0.5 half 0.1 0.1", "cx cy w h must be numbers"),
    ],
)
def test_a_bad_label_line_leaves_its_image_out_and_names_file_and_line(
    tenant_dataset, yolo_folder, run_import, bad_line, message
):
    (yolo_folder / "labels/train/a.txt").write_text(f"0 0.5 0.5 0.5 0.2\n{bad_line}\n")

    counters, errors = run_import(str(yolo_folder), format="yolo", create_classes=True)

    assert [(e.field, e.message) for e in errors] == [("labels/train/a.txt:2", message)]
    assert 1 <= errors[0].line <= 3  # a.png's position in the walk
    assert [row[0] for row in _rows(tenant_dataset)] == ["c.PNG", "train/b.jpg"]
    assert counters.inserted == 2


def test_a_label_file_without_an_image_is_reported_on_line_0(tenant_dataset, yolo_folder, run_import):
    (yolo_folder / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")

    counters, errors = run_import(str(yolo_folder), format="yolo", create_classes=True)

    assert errors == [LineError(0, "labels/train/orphan.txt", "has no image in images/ at the same path")]
    assert counters.inserted == 3


def test_an_image_whose_size_cannot_be_read_is_reported(tenant_dataset, yolo_folder, run_import):
    (yolo_folder / "images/train/broken.jpg").write_bytes(b"not a jpeg at all")

    counters, errors = run_import(str(yolo_folder), format="yolo", create_classes=True)

    assert [(e.field, e.message) for e in errors] == [
        ("images/train/broken.jpg", "is not an image whose width and height can be read from its header")
    ]
    assert counters.inserted == 3


def test_a_folder_without_a_class_list_imports_nothing(tenant_dataset, yolo_folder, run_import):
    (yolo_folder / "classes.txt").unlink()

    counters, errors = run_import(str(yolo_folder), format="yolo", create_classes=True)

    assert errors == [
        LineError(0, "data.yaml", "is missing, and so is classes.txt: a YOLO folder names its classes in one of them")
    ]
    assert counters.inserted == 0


def test_a_folder_outside_the_tenant_folder_is_refused(tenant_dataset, tmp_path, run_import):
    with pytest.raises(StorageError, match="outside this tenant's folder"):
        run_import(str(tmp_path), format="yolo")


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
def test_images_uri_holds_the_images_and_the_image_endpoint_serves_them(
    tenant_dataset, yolo_folder, import_root, run_import, make_token, api_client
):
    from tests.conftest import TENANT_A
    from tests.datasets.conftest import wait_for_reader

    # given the images moved out of the YOLO folder, the labels left in it
    pictures = import_root / "pictures"
    (yolo_folder / "images").rename(pictures)

    counters, errors = run_import(str(yolo_folder), format="yolo", images_uri=str(pictures), create_classes=True)

    assert errors == [] and (counters.inserted, counters.labels) == (3, 3)
    assert [row[:2] for row in _rows(tenant_dataset)] == [
        ("c.PNG", str(pictures / "c.PNG")),
        ("train/a.png", str(pictures / "train/a.png")),
        ("train/b.jpg", str(pictures / "train/b.jpg")),
    ]
    wait_for_reader()
    row = DataRow.objects.get(dataset=tenant_dataset, external_id="train/a.png")
    served = api_client(make_token(TENANT_A)).get(
        f"/api/v1/projects/{tenant_dataset.project_id}/datasets/{tenant_dataset.pk}/datarows/{row.pk}/image"
    )
    assert served.status_code == 200 and b"".join(served.streaming_content) == png_bytes(200, 100)


@pytest.mark.parametrize("images_uri", ["s3://bucket/images/", "OTHER_TENANT"])
def test_images_uri_of_a_yolo_import_is_a_local_folder_of_the_tenant(
    tenant_dataset, yolo_folder, import_root, run_import, images_uri
):
    if images_uri == "OTHER_TENANT":
        images_uri = str(import_root.parent / "globex")

    counters, errors = run_import(str(yolo_folder), format="yolo", images_uri=images_uri)

    assert [(e.line, e.field) for e in errors] == [(0, "images_uri")]
    assert counters.inserted == 0
