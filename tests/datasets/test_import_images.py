"""Image folders, local and on S3 (moto's real HTTP server on loopback playing S3), through the import pipeline."""

import boto3
import pytest

from datasets.importers.records import LineError
from datasets.models import DataRow, Label
from tests.conftest import TENANT_A
from tests.datasets.image_files import jpeg_header_bytes, png_bytes


def _rows(dataset):
    return sorted(DataRow.objects.filter(dataset=dataset).values_list("external_id", "uri", "width", "height"))


@pytest.fixture
def photo_folder(import_root):
    root = import_root / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(png_bytes(30, 20))
    (root / "sub/b.jpg").write_bytes(jpeg_header_bytes(640, 480, exif_bytes=100_000))  # size read past 64 KiB
    (root / "sub/C.JPEG").write_bytes(jpeg_header_bytes(8, 6))
    (root / "notes.txt").write_text("not an image")
    return root


def test_local_folder_gives_one_datarow_per_image_sized_from_its_header(tenant_dataset, photo_folder, run_import):
    counters, errors = run_import(str(photo_folder), format="images")

    assert (errors, counters.inserted) == ([], 3)
    assert _rows(tenant_dataset) == [
        ("a.png", str(photo_folder / "a.png"), 30, 20),
        ("sub/C.JPEG", str(photo_folder / "sub/C.JPEG"), 8, 6),
        ("sub/b.jpg", str(photo_folder / "sub/b.jpg"), 640, 480),
    ]


def test_reimporting_a_folder_refreshes_rows_and_keeps_their_labels(
    tenant_dataset, photo_folder, run_import, write_jsonl
):
    run_import(str(photo_folder), format="images")
    run_import(
        write_jsonl([{"external_id": "a.png", "uri": "elsewhere.png", "labels": [{"class": "cat"}]}]),
        create_classes=True,
    )
    (photo_folder / "a.png").write_bytes(png_bytes(40, 10))

    counters, _ = run_import(str(photo_folder), format="images")

    assert (counters.inserted, counters.updated) == (0, 3)
    assert _rows(tenant_dataset)[0] == ("a.png", str(photo_folder / "a.png"), 40, 10)
    assert Label.objects.filter(datarow__dataset=tenant_dataset, datarow__external_id="a.png").count() == 1


def test_a_file_named_like_an_image_that_is_not_one_is_reported(tenant_dataset, photo_folder, run_import):
    (photo_folder / "sub/broken.png").write_bytes(b"\x89PNG but truncated")

    counters, errors = run_import(str(photo_folder), format="images")

    assert [(e.field, e.message) for e in errors] == [
        ("sub/broken.png", "is not an image whose width and height can be read from its header")
    ]
    assert counters.inserted == 3


@pytest.fixture
def s3_bucket(s3_endpoint, settings):
    """A bucket on the loopback S3 whose set1/ prefix tenant A may read."""
    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://photos/set1/"]}
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="photos")
    objects = {
        "set1/a.png": png_bytes(30, 20, text_bytes=200_000),  # larger than the ranged read; its size is up front
        "set1/deep/b.jpg": jpeg_header_bytes(640, 480),
        "set1/late.jpg": jpeg_header_bytes(640, 480, exif_bytes=100_000),  # its size comes after 64 KiB
        "set1/empty.png": b"",
        "set1/readme.txt": b"not an image",
        "set1-other/c.png": png_bytes(5, 5),  # a sibling prefix, not inside set1/
    }
    for key, body in objects.items():
        client.put_object(Bucket="photos", Key=key, Body=body)
    yield client
    for key in objects:
        client.delete_object(Bucket="photos", Key=key)
    client.delete_bucket(Bucket="photos")


def test_s3_prefix_gives_one_datarow_per_image_sized_by_a_ranged_read(tenant_dataset, s3_bucket, run_import):
    counters, errors = run_import("s3://photos/set1", format="images")

    assert _rows(tenant_dataset) == [
        ("a.png", "s3://photos/set1/a.png", 30, 20),
        ("deep/b.jpg", "s3://photos/set1/deep/b.jpg", 640, 480),
    ]
    unreadable = "has no width and height that can be read from its first 64 KiB"
    assert sorted((e.field, e.message) for e in errors) == [("empty.png", unreadable), ("late.jpg", unreadable)]
    assert all(isinstance(e, LineError) and e.line > 0 for e in errors)
    assert counters.inserted == 2
