"""Each tenant reads its own files and buckets only: local files under LOCAL_READ_ROOT/<schema>/ (links resolved),
s3:// objects under its TENANT_S3_PREFIXES, and the image endpoint serves images only."""

import uuid
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from datasets.models import DataRow, Dataset
from mlops.storage import StorageError, open_uri
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B
from tests.datasets.conftest import wait_for_reader
from tests.datasets.image_files import png_bytes
from tests.factories import dataset_make, project_make

# Committed data, and GETs that the router sends to the reader.
pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]


@pytest.fixture
def folders(import_root):
    """Tenant A's folder (a text file, an image) and tenant B's, side by side under the read root."""
    a, b = import_root, import_root.parent / TENANT_B
    (a / "photos").mkdir()
    (a / "photos" / "cat.png").write_bytes(png_bytes(30, 20))
    (a / "secret.txt").write_text("tenant A's secret\n")
    (b / "own.png").write_bytes(png_bytes(5, 5))
    return a, b


def _dataset(schema: str) -> Dataset:
    with tenant_scope(schema):
        dataset = dataset_make(project=project_make())
    wait_for_reader()
    return dataset


def _import(schema: str, dataset: Dataset, uri: str, **options):
    from datasets.services.imports import ImportOptions, dataset_import_run

    errors = []
    with tenant_scope(schema):
        counters = dataset_import_run(
            dataset=dataset,
            uri=uri,
            options=ImportOptions(**options),
            source="import:t",
            user="tester",
            progress=lambda counters, batch: errors.extend(batch),
        )
    return counters, errors


def _post_import(api_client, make_token, schema: str, dataset: Dataset, **body):
    return api_client(make_token(schema)).post(
        f"/api/v1/projects/{dataset.project_id}/datasets/{dataset.pk}/imports", body, format="json"
    )


def _datarow(schema: str, dataset: Dataset, uri: str) -> int:
    """A datarow written straight into the tenant's schema, as no import would any more."""
    with tenant_scope(schema):
        row = DataRow.objects.create(dataset=dataset, external_id=uuid.uuid4().hex, uri=uri)
    wait_for_reader()
    return row.pk


def _detail(api_client, make_token, schema: str, dataset: Dataset, datarow_id: int, suffix: str = ""):
    return api_client(make_token(schema)).get(
        f"/api/v1/projects/{dataset.project_id}/datasets/{dataset.pk}/datarows/{datarow_id}{suffix}"
    )


# --- local files


@pytest.mark.parametrize(
    "source", ["{a}/photos", "file://{a}/photos", "../acme/photos", "{b}/../acme/photos", "/etc", "{a}/secret.txt"]
)
def test_tenant_b_cannot_import_from_tenant_a_folder_or_anywhere_else(folders, api_client, make_token, source):
    a, b = folders
    dataset = _dataset(TENANT_B)
    uri = source.format(a=a, b=b)
    for import_format in ("images", "jsonl"):
        response = _post_import(api_client, make_token, TENANT_B, dataset, uri=uri, format=import_format)
        assert response.status_code == 400, response.content
        assert "outside this tenant's folder" in response.json()["message"]
        assert "uri" in response.json()["extra"]["fields"]


def test_a_manifest_row_naming_another_tenants_file_is_a_line_error(folders, import_root):
    # given B's own manifest, whose rows name A's files every way a path can be spelled
    a, b = folders
    manifest = b / "rows.jsonl"
    uris = [
        str(a / "secret.txt"),
        f"file://{a}/photos/cat.png",
        "../acme/secret.txt",
        f"{b}/../acme/secret.txt",
        "/etc/hostname",
        "own.png",
        str(b / "own.png"),
    ]
    manifest.write_text("".join(f'{{"external_id": "r{i}", "uri": "{uri}"}}\n' for i, uri in enumerate(uris)))
    dataset = _dataset(TENANT_B)
    # when
    counters, errors = _import(TENANT_B, dataset, str(manifest))
    # then the rows that leave B's folder are refused; a relative path is taken from B's folder
    assert [(e.line, e.field) for e in errors] == [(1, "uri"), (2, "uri"), (3, "uri"), (4, "uri"), (5, "uri")]
    assert all("outside this tenant's folder" in e.message for e in errors)
    with tenant_scope(TENANT_B):
        assert sorted(DataRow.objects.filter(dataset=dataset).values_list("uri", flat=True)) == sorted(uris[5:])


def test_a_coco_image_outside_the_tenant_folder_is_a_line_error(folders):
    a, b = folders
    (b / "coco.json").write_text(
        '{"categories": [{"id": 1, "name": "cat"}], "images": ['
        f'{{"id": 1, "file_name": "own.png", "width": 5, "height": 5}}, '
        f'{{"id": 2, "file_name": "x.png", "coco_url": "{a}/photos/cat.png", "width": 30, "height": 20}}, '
        '{"id": 3, "file_name": "../acme/secret.txt", "width": 1, "height": 1}]}'
    )
    dataset = _dataset(TENANT_B)

    counters, errors = _import(TENANT_B, dataset, str(b / "coco.json"), format="coco", create_classes=True)

    assert [(e.line, e.field) for e in errors] == [(2, "images[1].coco_url"), (3, "images[2].file_name")]
    assert counters.inserted == 1


def test_tenant_b_cannot_read_tenant_a_file_through_the_image_endpoint(folders, api_client, make_token):
    # given rows of B that name A's text file (written to B's schema directly: imports refuse them)
    a, _ = folders
    dataset = _dataset(TENANT_B)
    rows = [
        _datarow(TENANT_B, dataset, uri)
        for uri in (str(a / "secret.txt"), "../acme/secret.txt", f"file://{a}/secret.txt")
    ]
    for row in rows:
        # when
        image = _detail(api_client, make_token, TENANT_B, dataset, row, "/image")
        detail = _detail(api_client, make_token, TENANT_B, dataset, row).json()
        # then
        assert image.status_code == 404 and b"secret" not in b"".join(getattr(image, "streaming_content", [b""]))
        assert "outside this tenant's folder" in image.json()["message"]
        assert detail["image_url"] is None and "outside this tenant's folder" in detail["image_url_error"]


def test_links_out_of_the_tenant_folder_are_refused(folders, api_client, make_token):
    # given links in A's folder into B's folder and /etc, next to a link that stays inside A's folder
    a, b = folders
    (a / "photos" / "b.png").symlink_to(b / "own.png")
    (a / "photos" / "etc.png").symlink_to("/etc/hostname")
    (a / "photos" / "inside.png").symlink_to(a / "photos" / "cat.png")
    (a / "b-folder").symlink_to(b, target_is_directory=True)
    dataset = _dataset(TENANT_A)
    # when A imports its folder, a folder that links to B's, and a row that names a link
    counters, errors = _import(TENANT_A, dataset, str(a / "photos"), format="images")
    folder_link = _post_import(api_client, make_token, TENANT_A, dataset, uri=str(a / "b-folder"), format="images")
    row = _datarow(TENANT_A, dataset, str(a / "photos" / "b.png"))
    # then every link out is refused: as a bad line, a 400, a 404 and a refused read
    assert sorted((e.field, e.message) for e in errors) == [
        ("b.png", "is a link out of this tenant's folder"),
        ("etc.png", "is a link out of this tenant's folder"),
    ]
    assert counters.inserted == 2  # cat.png, and inside.png whose link stays in A's folder
    assert folder_link.status_code == 400
    assert _detail(api_client, make_token, TENANT_A, dataset, row, "/image").status_code == 404
    with tenant_scope(TENANT_A), pytest.raises(StorageError, match="outside this tenant's folder"):
        with open_uri(str(a / "photos" / "etc.png")):
            pass


def test_yolo_folders_whose_parts_link_out_are_refused(folders):
    a, b = folders
    yolo = a / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "classes.txt").write_text("cat\n")
    (yolo / "images").symlink_to(b, target_is_directory=True)
    dataset = _dataset(TENANT_A)

    counters, errors = _import(TENANT_A, dataset, str(yolo), format="yolo")

    assert [(e.line, e.field, e.message) for e in errors] == [(0, "images", "is a link out of this tenant's folder")]
    assert counters.inserted == 0


def test_the_image_endpoint_serves_images_only_with_the_sniffed_type(folders, api_client, make_token):
    # given a text file named like an image, and a PNG named like a text file
    a, _ = folders
    (a / "fake.png").write_text("<script>alert(1)</script>\n")
    (a / "real.txt").write_bytes(png_bytes(3, 3))
    dataset = _dataset(TENANT_A)
    fake, real = _datarow(TENANT_A, dataset, str(a / "fake.png")), _datarow(TENANT_A, dataset, "real.txt")
    # when
    refused = _detail(api_client, make_token, TENANT_A, dataset, fake, "/image")
    served = _detail(api_client, make_token, TENANT_A, dataset, real, "/image")
    # then
    assert refused.status_code == 415 and "only images are served" in refused.json()["message"]
    assert served.status_code == 200 and b"".join(served.streaming_content) == png_bytes(3, 3)
    assert served["Content-Type"] == "image/png" and served["X-Content-Type-Options"] == "nosniff"


def test_provisioning_makes_the_tenant_folder(settings, tmp_path):
    from tenancy.services import tenant_provision

    settings.LOCAL_READ_ROOT = tmp_path / "imports"
    tenant_provision(schema_name=TENANT_A, name="Acme", if_missing=True)

    assert (tmp_path / "imports" / TENANT_A).is_dir()


# --- S3


@pytest.fixture
def buckets(s3_endpoint, settings, import_root):
    """A's bucket (A may read set1/ only) and B's bucket (B may read all of it), on the loopback S3."""
    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://acme-data/set1/"], TENANT_B: ["s3://globex-data/"]}
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    objects = {
        ("acme-data", "set1/a.png"): png_bytes(30, 20),
        ("acme-data", "set1-other/c.png"): png_bytes(5, 5),
        ("acme-data", "set1/./dot.png"): png_bytes(6, 6),
        ("globex-data", "manifest.jsonl"): b'{"external_id": "g", "uri": "s3://globex-data/g.png"}\n',
        ("globex-data", "g.png"): png_bytes(7, 7),
    }
    for bucket in ("acme-data", "globex-data"):
        client.create_bucket(Bucket=bucket)
    for (bucket, key), body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    yield client
    for bucket, key in objects:
        client.delete_object(Bucket=bucket, Key=key)
    for bucket in ("acme-data", "globex-data"):
        client.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("s3://acme-data/set1/a.png", True),
        ("s3://acme-data/set1", True),
        ("s3://acme-data/set1/", True),
        ("s3://acme-data//set1/a.png", True),  # the key the read uses is set1/a.png
        ("s3://acme-data/set1-other/c.png", False),  # not a whole segment
        ("s3://acme-data/set10/a.png", False),
        ("s3://acme-data/set1/../set1-other/c.png", False),
        ("s3://acme-data/set1/./a.png", False),
        ("s3://acme-data/", False),
        ("s3://globex-data/g.png", False),
        ("s3://acme-data.evil/set1/a.png", False),
        ("s3://user@acme-data/set1/a.png", False),
    ],
)
def test_s3_prefixes_match_whole_segments(settings, in_tenant_a, uri, allowed):
    from mlops.storage import s3_location

    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://acme-data/set1/"], TENANT_B: ["s3://globex-data/"]}
    if allowed:
        assert s3_location(uri)[0] == "acme-data"
    else:
        with pytest.raises(StorageError, match="not in an S3 bucket or prefix this tenant may read"):
            s3_location(uri)


def test_no_tenant_reads_s3_unless_configured(settings, in_tenant_a):
    from mlops.storage import s3_location

    settings.TENANT_S3_PREFIXES = {}
    with pytest.raises(StorageError):
        s3_location("s3://acme-data/set1/a.png")


@pytest.mark.parametrize(
    ("import_format", "uri"),
    [
        ("jsonl", "s3://globex-data/manifest.jsonl"),
        ("images", "s3://globex-data/"),
        ("images", "s3://globex-data"),
        ("images", "s3://acme-data/set1-other"),
        ("images", "s3://acme-data/set1/../set1-other"),
        ("coco", "s3://x/c.json"),
    ],
)
def test_tenant_a_cannot_import_from_another_bucket_or_prefix(buckets, api_client, make_token, import_format, uri):
    dataset = _dataset(TENANT_A)

    response = _post_import(api_client, make_token, TENANT_A, dataset, uri=uri, format=import_format)

    assert response.status_code == 400, response.content
    assert "not in an S3 bucket or prefix this tenant may read" in response.json()["message"]


def test_reads_of_another_bucket_are_refused_where_they_happen(buckets):
    # the job itself (a job queued before the prefixes changed), and a trainer opening a datarow's image
    dataset = _dataset(TENANT_A)
    with pytest.raises(StorageError, match="may read"):
        _import(TENANT_A, dataset, "s3://globex-data/", format="images")
    with pytest.raises(StorageError, match="may read"):
        _import(TENANT_A, dataset, "s3://globex-data/manifest.jsonl")
    with tenant_scope(TENANT_A), pytest.raises(StorageError, match="may read"), open_uri("s3://globex-data/g.png"):
        pass
    # while B reads its own
    counters, errors = _import(TENANT_B, _dataset(TENANT_B), "s3://globex-data/manifest.jsonl")
    assert (counters.inserted, errors) == (1, [])


def test_an_s3_folder_import_reads_only_the_tenant_prefix(buckets):
    dataset = _dataset(TENANT_A)

    counters, errors = _import(TENANT_A, dataset, "s3://acme-data/set1", format="images")

    assert [(e.field, e.message) for e in errors] == [("./dot.png", "has '.' or '..' segments, which are not read")]
    with tenant_scope(TENANT_A):
        uris = list(DataRow.objects.filter(dataset=dataset).values_list("uri", flat=True))
    assert uris == ["s3://acme-data/set1/a.png"]  # not set1-other/c.png, listed by the plain prefix set1


def test_image_urls_are_presigned_for_the_tenant_prefix_only(buckets, api_client, make_token):
    # given A's rows naming its prefix, a sibling prefix and B's bucket (imports take s3 rows: reads are checked)
    dataset = _dataset(TENANT_A)
    rows = [
        _datarow(TENANT_A, dataset, uri)
        for uri in ("s3://acme-data/set1/a.png", "s3://acme-data/set1-other/c.png", "s3://globex-data/g.png")
    ]
    # when
    own, sibling, other = (_detail(api_client, make_token, TENANT_A, dataset, row).json() for row in rows)
    # then only the tenant's own object is signed, and the signed URL opens it
    assert own["image_url_error"] is None and urlsplit(own["image_url"]).path.endswith("/set1/a.png")
    assert httpx.get(own["image_url"]).content == png_bytes(30, 20)
    for detail in (sibling, other):
        assert detail["image_url"] is None
        assert "not in an S3 bucket or prefix this tenant may read" in detail["image_url_error"]
