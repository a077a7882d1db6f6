"""The datarow API: keyset pages and filters, detail with labels, predictions and a displayable image URL,
the image endpoint, bulk tags and bulk delete; roles and tenants."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from django.db import connections
from django.utils import timezone

from datasets.models import DataRow, Dataset, Label, Prediction
from datasets.selectors import DatarowFilters, datarow_list
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A, TENANT_B
from tests.datasets.conftest import wait_for_reader
from tests.datasets.image_files import png_bytes
from tests.factories import dataset_make

# Committed data (the fixtures' tenants and imports), and GETs that the router sends to the reader.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "reader"])


def _url(dataset, suffix: str = "") -> str:
    return f"/api/v1/projects/{dataset.project_id}/datasets/{dataset.pk}/datarows{suffix}"


def _row(i, **extra):
    return {
        "external_id": f"img-{i:03d}",
        "uri": f"s3://bucket/cam-{i % 2}/{i}.jpg",
        "width": 640,
        "height": 480,
        **extra,
    }


def _ids(dataset, **filters) -> list[int]:
    with tenant_scope(TENANT_A):
        return list(DataRow.objects.filter(dataset=dataset, **filters).order_by("id").values_list("id", flat=True))


def _walk(client, url: str, params: dict) -> tuple[list[dict], int]:
    rows, pages, cursor = [], 0, None
    while True:
        response = client.get(url, {**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        pages += 1
        rows += response.json()["results"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return rows, pages


def _counts(dataset) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(the dataset's counters, the rows actually there)."""
    with tenant_scope(TENANT_A):
        dataset = Dataset.objects.get(pk=dataset.pk)
        actual = (
            DataRow.objects.filter(dataset=dataset).count(),
            Label.objects.filter(datarow__dataset=dataset).count(),
            Prediction.objects.filter(datarow__dataset=dataset).count(),
        )
        return (dataset.datarow_count, dataset.label_count, dataset.prediction_count), actual


def test_keyset_pages_walk_every_datarow_once_in_id_order(tenant_dataset, import_records, make_token, api_client):
    # given
    import_records([_row(i) for i in range(25)])
    client = api_client(make_token(TENANT_A))
    # when
    rows, pages = _walk(client, _url(tenant_dataset), {"page_size": 7})
    # then
    assert [row["id"] for row in rows] == _ids(tenant_dataset)
    assert len(rows) == 25 and pages == 4
    assert rows[0]["external_id"] == "img-000" and rows[0]["uri"] == "s3://bucket/cam-0/0.jpg"


def test_rows_added_while_paging_appear_after_the_cursor_without_repeats(
    tenant_dataset, import_records, make_token, api_client
):
    import_records([_row(i) for i in range(4)])
    client = api_client(make_token(TENANT_A))
    first = client.get(_url(tenant_dataset), {"page_size": 3}).json()
    import_records([_row(i) for i in range(4, 6)])
    rest, _ = _walk(client, _url(tenant_dataset), {"page_size": 3, "cursor": first["next_cursor"]})
    assert [row["id"] for row in first["results"] + rest] == _ids(tenant_dataset)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 1001}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"width_min": "wide"}, "width_min"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"media_type": "video"}, "media_type"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(tenant_dataset, make_token, api_client, params, field):
    wait_for_reader()
    response = api_client(make_token(TENANT_A)).get(_url(tenant_dataset), params)
    assert response.status_code == 400
    assert response.json()["message"] == "Validation error"
    assert field in response.json()["extra"]["fields"]


def test_filters_on_the_plain_columns(tenant_dataset, import_records, make_token, api_client):
    # given rows that differ in each filtered column
    import_records(
        [
            _row(1, tags=["night", "city"]),
            _row(2, width=1920, height=1080, tags=["night"]),
            _row(3, width=320, height=240),
            {**_row(4, tags=["city"]), "external_id": "other-4", "uri": "https://cdn/4.jpg"},
        ]
    )
    with tenant_scope(TENANT_A):
        DataRow.objects.filter(dataset=tenant_dataset, external_id="img-001").update(
            created_at=timezone.now() - timedelta(days=10)
        )
    wait_for_reader()
    old_cutoff = (timezone.now() - timedelta(days=5)).isoformat()
    client = api_client(make_token(TENANT_A))

    def listed(**params) -> list[str]:
        rows, _ = _walk(client, _url(tenant_dataset), {"page_size": 2, **params})
        return [row["external_id"] for row in rows]

    # then
    assert listed(external_id="img-002") == ["img-002"]
    assert listed(external_id_prefix="img-") == ["img-001", "img-002", "img-003"]
    assert listed(external_id_prefix="img_") == []  # LIKE wildcards in a prefix are literal
    assert listed(uri_prefix="s3://bucket/cam-1/") == ["img-001", "img-003"]
    assert listed(width_min=641) == ["img-002"]
    assert listed(width_max=640, height_min=480) == ["img-001", "other-4"]
    assert listed(height_max=240) == ["img-003"]
    assert listed(media_type="image") == ["img-001", "img-002", "img-003", "other-4"]
    assert listed(created_before=old_cutoff) == ["img-001"]
    assert listed(created_after=old_cutoff) == ["img-002", "img-003", "other-4"]
    assert listed(tag="night") == ["img-001", "img-002"]
    assert client.get(_url(tenant_dataset), {"tag": ["night", "city"]}).json()["results"][0]["external_id"] == "img-001"
    assert len(client.get(_url(tenant_dataset), {"tag": ["night", "city"]}).json()["results"]) == 1


def test_keyset_pages_and_each_filter_are_served_by_their_index(tenant_dataset):
    """With sequential scans priced out (as they are at millions of rows) and rows spread over datasets, the planner
    reaches for each query's index: proof that it exists and fits the query's shape (columns, operator class,
    expression), and that a page needs no sort. (Tags have the GIN index of 0001; on a dataset this small the
    planner rightly prefers the dataset's own index, so it is not asserted here.)"""
    # given our dataset, with one odd row, between two bigger ones
    with tenant_scope(TENANT_A), connections["default"].cursor() as cursor:
        before, after = (dataset_make(project=tenant_dataset.project, name=name) for name in ("before", "after"))
        for dataset, rows in ((before, 30_000), (tenant_dataset, 2_000), (after, 30_000)):
            cursor.execute(
                """
                INSERT INTO datasets_datarow (dataset_id, external_id, uri, media_type, width, height, metadata, tags,
                                              created_at, updated_at)
                SELECT %(dataset)s, 'img-' || lpad(i::text, 6, '0'), 's3://bucket/cam-' || i %% 2 || '/' || i || '.jpg',
                       'image', CASE WHEN i = 7 THEN 1920 ELSE 640 END, CASE WHEN i = 7 THEN 50 ELSE 480 END, '{}', '{}',
                       now() - CASE WHEN i = 7 THEN interval '10 days' ELSE interval '0' END, now()
                FROM generate_series(1, %(rows)s) AS i""",
                {"dataset": dataset.pk, "rows": rows},
            )
    # then
    first_page = _plan(datarow_list(dataset=tenant_dataset).filter(id__gt=0)[:100])
    assert "Index Scan using datarow_dataset_id" in first_page and "Sort" not in first_page, first_page
    for filters, index in [
        (DatarowFilters(external_id_prefix="img-000007"), "datarow_external_id_prefix"),
        (DatarowFilters(uri_prefix="s3://bucket/cam-1/7.jpg"), "datarow_uri_prefix"),
        (DatarowFilters(width_min=1000), "datarow_dataset_width"),
        (DatarowFilters(height_max=100), "datarow_dataset_height"),
        (DatarowFilters(created_before=timezone.now() - timedelta(days=1)), "datarow_dataset_created"),
    ]:
        plan = _plan(datarow_list(dataset=tenant_dataset, filters=filters).order_by())
        assert index in plan, plan


def _plan(queryset) -> str:
    with tenant_scope(TENANT_A), connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE datasets_datarow")
        cursor.execute("SET enable_seqscan = off")
        try:
            return queryset.using("default").explain()
        finally:
            cursor.execute("RESET enable_seqscan")


@pytest.mark.parametrize("setup", ["no credentials", "no region and a bad endpoint"])
def test_detail_of_an_s3_row_that_cannot_be_signed_has_no_url_and_says_why(
    tenant_dataset, import_records, make_token, api_client, monkeypatch, settings, tmp_path, setup
):
    # given a bucket the tenant may read, but nothing to sign its URLs with (and no instance metadata to ask)
    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://bucket/"]}
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    # boto3's default session keeps the credentials an earlier test's client resolved
    monkeypatch.setattr("boto3.DEFAULT_SESSION", None)
    if setup == "no region and a bad endpoint":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        settings.AWS_S3_ENDPOINT_URL = "not a url"
    import_records([_row(1)])
    (datarow_id,) = _ids(tenant_dataset)
    # when
    response = api_client(make_token(TENANT_A)).get(_url(tenant_dataset, f"/{datarow_id}"))
    # then the row comes back, without a URL and with the reason
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["datarow"]["external_id"] == "img-001"
    assert body["image_url"] is None
    assert "cannot be signed" in body["image_url_error"]


def test_detail_has_labels_predictions_by_model_version_and_a_presigned_url(
    tenant_dataset, import_records, make_token, api_client, monkeypatch, settings
):
    # given offline AWS credentials (presigning makes no request), and a bucket the tenant may read
    settings.TENANT_S3_PREFIXES = {TENANT_A: ["s3://bucket/"]}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    import_records(
        [
            _row(
                1,
                labels=[
                    {"class": "vehicle/car", "box": [10, 20, 100, 50], "attributes": {"occluded": True}},
                    {"class": "vehicle/car", "polygon": [[0, 0], [10, 0], [10, 10]]},
                    {"class": "daytime"},
                ],
                predictions=[
                    {"model": "yolo", "version": "1", "class": "vehicle/car", "score": 0.4, "box": [1, 2, 3, 4]},
                    {"model": "yolo", "version": "1", "class": "vehicle/car", "score": 0.9, "box": [5, 6, 7, 8]},
                    {"model": "detr", "version": "2", "class": "daytime", "score": 0.7},
                ],
            )
        ]
    )
    (datarow_id,) = _ids(tenant_dataset)
    # when
    response = api_client(make_token(TENANT_A)).get(_url(tenant_dataset, f"/{datarow_id}"))
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["datarow"]["external_id"] == "img-001"
    url = urlsplit(body["image_url"])
    assert url.scheme == "https" and "bucket" in url.netloc + url.path and url.path.endswith("/1.jpg")
    assert "X-Amz-Signature" in parse_qs(url.query) or "Signature" in parse_qs(url.query)
    assert body["image_url_error"] is None
    labels = {label["kind"]: label for label in body["labels"]}
    assert {kind: (label["class"], label["box"]) for kind, label in labels.items()} == {
        "box": ("vehicle/car", [10, 20, 100, 50]),
        "polygon": ("vehicle/car", [0, 0, 10, 10]),
        "classification": ("daytime", None),
    }
    assert labels["box"]["attributes"] == {"occluded": True} and labels["box"]["area"] == 5000
    assert labels["polygon"]["polygon"] == [[0, 0], [10, 0], [10, 10]] and labels["polygon"]["area"] == 50
    assert (labels["box"]["source"], labels["box"]["updated_by"]) == ("import:seed", "seeder")
    assert labels["box"]["updated_at"]
    groups = [
        (g["name"], g["version"], [(p["class"], p["score"], p["box"]) for p in g["predictions"]])
        for g in body["predictions"]
    ]
    assert sorted(groups) == [
        ("detr", "2", [("daytime", 0.7, None)]),
        ("yolo", "1", [("vehicle/car", 0.9, [5, 6, 7, 8]), ("vehicle/car", 0.4, [1, 2, 3, 4])]),
    ]


def test_image_urls_of_http_and_local_datarows(tenant_dataset, import_records, import_root, make_token, api_client):
    # given
    image = import_root / "frame.png"
    image.write_bytes(png_bytes(4, 3))
    import_records(
        [
            {"external_id": "web", "uri": "https://cdn.example.com/a.jpg"},
            {"external_id": "local", "uri": str(image)},
            {"external_id": "missing", "uri": "gone.png"},
        ]
    )
    web, local, missing = _ids(tenant_dataset)
    client = api_client(make_token(TENANT_A))
    # when
    web_url = client.get(_url(tenant_dataset, f"/{web}")).json()["image_url"]
    local_url = client.get(_url(tenant_dataset, f"/{local}")).json()["image_url"]
    missing_detail = client.get(_url(tenant_dataset, f"/{missing}")).json()
    served = client.get(local_url)
    refused = client.get(_url(tenant_dataset, f"/{missing}/image"))
    not_local = client.get(_url(tenant_dataset, f"/{web}/image"))
    # then
    assert web_url == "https://cdn.example.com/a.jpg"
    assert local_url == f"http://testserver{_url(tenant_dataset, f'/{local}/image')}"
    assert served.status_code == 200 and b"".join(served.streaming_content) == png_bytes(4, 3)
    assert served["Content-Type"] == "image/png" and served["X-Content-Type-Options"] == "nosniff"
    assert missing_detail["image_url"] is None and "does not exist" in missing_detail["image_url_error"]
    assert refused.status_code == 404 and "does not exist" in refused.json()["message"]
    assert not_local.status_code == 404 and "not a local file" in not_local.json()["message"]


def test_bulk_tags_add_and_remove_in_one_update_sorted_and_unique(
    tenant_dataset, import_records, make_token, api_client
):
    # given
    import_records([_row(1, tags=["old", "b"]), _row(2), _row(3, tags=["keep"])])
    first, second, third = _ids(tenant_dataset)
    with tenant_scope(TENANT_A):
        other = dataset_make(project=tenant_dataset.project, name="other")
    import_records([_row(9, tags=["old"])], dataset=other)
    (elsewhere,) = _ids(other)
    # when
    response = api_client(make_token(TENANT_A)).post(
        _url(tenant_dataset, "/tags"),
        {
            "datarow_ids": [first, second, first, elsewhere, 999_999_999],
            "add": ["b", "a", "Z", "é"],
            "remove": ["old"],
        },
        format="json",
    )
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 2, "not_found_ids": sorted([elsewhere, 999_999_999])}
    with tenant_scope(TENANT_A):
        tags = dict(DataRow.objects.filter(pk__in=[first, second, third, elsewhere]).values_list("id", "tags"))
    # sorted by code point, as imports store them (Python's sorted())
    assert tags[first] == tags[second] == sorted({"a", "b", "Z", "é"}) == ["Z", "a", "b", "é"]
    assert tags[third] == ["keep"] and tags[elsewhere] == ["old"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"datarow_ids": list(range(1, 10_002)), "add": ["x"]}, "datarow_ids"),
        ({"datarow_ids": [], "add": ["x"]}, "datarow_ids"),
        ({"datarow_ids": ["one"], "add": ["x"]}, "datarow_ids"),
        ({"datarow_ids": [2**63], "add": ["x"]}, "datarow_ids"),  # past bigint: was a 500 from SQL
        ({"datarow_ids": [1]}, "add"),
        ({"datarow_ids": [1], "add": ["x"], "remove": ["x"]}, "remove"),
        ({"datarow_ids": [1], "add": [""]}, "add"),
    ],
)
def test_bad_bulk_tag_requests_are_400_naming_the_field(tenant_dataset, make_token, api_client, body, field):
    wait_for_reader()
    response = api_client(make_token(TENANT_A)).post(_url(tenant_dataset, "/tags"), body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"message", "extra"}
    assert field in response.json()["extra"]["fields"]


def test_bulk_delete_removes_rows_with_labels_and_predictions_and_keeps_counts_exact(
    tenant_dataset, import_records, make_token, api_client
):
    # given
    prediction = {"model": "m", "version": "1", "class": "cat", "score": 0.5}
    import_records([_row(i, labels=[{"class": "cat"}] * (i + 1), predictions=[prediction]) for i in range(5)])
    ids = _ids(tenant_dataset)
    # when
    response = api_client(make_token(TENANT_A)).post(
        _url(tenant_dataset, "/delete"), {"datarow_ids": [ids[0], ids[3], ids[3], 999_999_999]}, format="json"
    )
    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"datarows": 2, "labels": 1 + 4, "predictions": 2, "not_found_ids": [999_999_999]}
    assert _ids(tenant_dataset) == [ids[1], ids[2], ids[4]]
    counters, actual = _counts(tenant_dataset)
    assert counters == actual == (3, 2 + 3 + 5, 3)


def test_bulk_delete_is_refused_while_an_import_holds_the_dataset(
    tenant_dataset, import_records, make_token, api_client
):
    # given another session holding the dataset's lock, as a running import does
    import_records([_row(1)])
    with tenant_scope(TENANT_A):
        params = connections["default"].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as importer:
        importer.execute("SELECT pg_advisory_lock(hashtext(%s), %s)", [f"{TENANT_A}.dataset", tenant_dataset.pk])
        # when
        response = api_client(make_token(TENANT_A)).post(
            _url(tenant_dataset, "/delete"), {"datarow_ids": _ids(tenant_dataset)}, format="json"
        )
    # then
    assert response.status_code == 409 and "busy" in response.json()["message"]
    assert len(_ids(tenant_dataset)) == 1


def test_viewer_reads_but_cannot_tag_or_delete(tenant_dataset, import_records, make_token, api_client):
    import_records([_row(1)])
    ids = _ids(tenant_dataset)
    client = api_client(make_token(TENANT_A, role="viewer"))
    assert client.get(_url(tenant_dataset)).status_code == 200
    assert client.get(_url(tenant_dataset, f"/{ids[0]}")).status_code == 200
    tagged = client.post(_url(tenant_dataset, "/tags"), {"datarow_ids": ids, "add": ["x"]}, format="json")
    deleted = client.post(_url(tenant_dataset, "/delete"), {"datarow_ids": ids}, format="json")
    assert tagged.status_code == deleted.status_code == 403
    assert "read-only" in tagged.json()["message"]
    assert _ids(tenant_dataset, tags__contains=["x"]) == [] and _ids(tenant_dataset) == ids


def test_another_tenant_cannot_read_tag_or_delete_datarows_by_id(
    tenant_dataset, import_records, make_token, api_client
):
    # given a datarow of tenant A, and a caller of tenant B using its ids
    import_records([_row(1, tags=["a-only"])])
    ids = _ids(tenant_dataset)
    # (a workspace of B's own: even a project of B with the same id is not the caller's)
    client = api_client(make_token(TENANT_B, workspace="ws-globex"))
    # when
    responses = [
        client.get(_url(tenant_dataset)),
        client.get(_url(tenant_dataset, f"/{ids[0]}")),
        client.get(_url(tenant_dataset, f"/{ids[0]}/image")),
        client.post(_url(tenant_dataset, "/tags"), {"datarow_ids": ids, "add": ["b-was-here"]}, format="json"),
        client.post(_url(tenant_dataset, "/delete"), {"datarow_ids": ids}, format="json"),
    ]
    # then B's schema answers as for any unknown id: no such project in the caller's workspace; A is untouched
    missing = {"message": f"Project {tenant_dataset.project_id} does not exist.", "extra": {}}
    for response in responses:
        assert (response.status_code, response.json()) == (404, missing)
    assert _ids(tenant_dataset, tags=["a-only"]) == ids
