"""Dataset exports: a job streams JSONL (the import manifest) or COCO to tenant storage in keyset batches; the
file is downloaded once the job has succeeded. JSONL imports back as it was exported."""

import threading
from functools import partial

import orjson
import pytest

from datasets.exporters.batches import export_batches
from datasets.exporters.formats import export_path
from datasets.exporters.snapshot import snapshot_reads
from datasets.models import DataRow, Dataset, Label, Prediction
from datasets.services import exports
from datasets.services.exports import datarows_export
from datasets.services.imports import ImportOptions, dataset_import_run
from jobs.models import Job
from jobs.services import JobCancelled
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.conftest import wait_for_reader
from tests.factories import dataset_make
from tests.live_services import live_environment, purge_task_queues, start_celery_worker, wait_until

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "reader"])

RECORDS = [
    {
        "external_id": "img-1",
        "uri": "s3://bucket/1.jpg",
        "width": 640,
        "height": 480,
        "metadata": {"weather": "rain", "capture": {"time": "2024-05-01T10:00:00Z", "lens": [24, 70]}},
        "tags": ["city", "night"],
        "labels": [
            {"class": "vehicle/car", "box": [10.5, 20, 100, 50], "attributes": {"occluded": True}},
            {"class": "vehicle/car/sedan", "polygon": [[0, 0], [10.25, 0], [10, 10]]},
            {"class": "daytime"},
        ],
        "predictions": [
            {"model": "yolo", "version": "1", "class": "vehicle/car", "score": 0.91, "box": [12, 20, 98, 50]},
            {"model": "detr", "version": "2", "class": "daytime", "score": 0.3},
        ],
    },
    {"external_id": "straße/2", "uri": "https://cdn.example.com/2.jpg"},
    {
        "external_id": "img-3",
        "uri": "s3://bucket/3.jpg",
        "width": 100,
        "height": 100,
        "labels": [],
        "predictions": [
            {
                "model": "yolo",
                "version": "1",
                "class": "vehicle/car/sedan",
                "score": 0.5,
                "polygon": [[1, 1], [5, 1], [5, 5]],
            }
        ],
    },
]


def _url(dataset, suffix: str = "") -> str:
    return f"/api/v1/projects/{dataset.project_id}/datasets/{dataset.pk}/exports{suffix}"


def _export(client, dataset, export_format: str) -> tuple[dict, bytes]:
    """Start an export, read its job back, and download its file."""
    started = client.post(_url(dataset), {"format": export_format}, format="json")
    assert started.status_code == 202, started.content
    job = client.get(f"/api/v1/jobs/{started.json()['id']}").json()
    assert job["status"] == "succeeded", job
    downloaded = client.get(_url(dataset, f"/{job['id']}/file"))
    assert downloaded.status_code == 200, downloaded.content
    return job, b"".join(downloaded.streaming_content)


def _contents(dataset) -> dict:
    """Everything an export carries, keyed by external id, free of ids and timestamps."""

    def geometry(item) -> tuple:
        return (
            item.ontology_class.name,
            item.kind,
            item.x,
            item.y,
            item.w,
            item.h,
            item.area,
            item.polygon,
            item.attributes,
        )

    with tenant_scope(TENANT_A):
        rows = {}
        for row in DataRow.objects.filter(dataset=dataset):
            labels = [geometry(label) for label in Label.objects.filter(datarow=row).select_related("ontology_class")]
            predictions = [
                (p.model_version.name, p.model_version.version, p.score, *geometry(p))
                for p in Prediction.objects.filter(datarow=row).select_related("ontology_class", "model_version")
            ]
            rows[row.external_id] = (
                row.uri,
                row.media_type,
                row.width,
                row.height,
                row.metadata,
                row.tags,
                sorted(labels, key=orjson.dumps),
                sorted(predictions, key=orjson.dumps),
            )
        dataset = Dataset.objects.get(pk=dataset.pk)
        return {"rows": rows, "counts": (dataset.datarow_count, dataset.label_count, dataset.prediction_count)}


def test_jsonl_export_imports_back_as_it_was(tenant_dataset, import_records, make_token, api_client, celery_eager):
    # given
    import_records(RECORDS)
    client = api_client(make_token(TENANT_A))
    # when exported, and the file imported into a new dataset
    job, exported = _export(client, tenant_dataset, "jsonl")
    with tenant_scope(TENANT_A):
        copy = dataset_make(project=tenant_dataset.project, name="copy")
    counters = import_records(exported.splitlines(), dataset=copy)
    # then
    assert (counters.inserted, counters.errors) == (3, 0)
    assert _contents(copy) == _contents(tenant_dataset)
    assert _contents(copy)["counts"] == (3, 3, 3)
    assert job["counters"] == {"datarows": 3, "labels": 3, "predictions": 3}
    assert job["progress"] == {"done": 3, "total": 3}
    assert orjson.loads(exported.splitlines()[1])["external_id"] == "straße/2"


def test_coco_export_lists_images_the_ontology_and_object_labels(
    tenant_dataset, import_records, import_root, make_token, api_client, celery_eager
):
    # given
    import_records(RECORDS)
    # when
    job, exported = _export(api_client(make_token(TENANT_A)), tenant_dataset, "coco")
    coco = orjson.loads(exported)
    # then
    categories = {c["id"]: (c["name"], c["supercategory"]) for c in coco["categories"]}
    assert sorted(categories.values()) == [
        ("daytime", ""),
        ("vehicle", ""),
        ("vehicle/car", "vehicle"),
        ("vehicle/car/sedan", "vehicle/car"),
    ]
    images = {image["id"]: image for image in coco["images"]}
    assert sorted((image["file_name"], image["coco_url"]) for image in images.values()) == [
        ("img-1", "s3://bucket/1.jpg"),
        ("img-3", "s3://bucket/3.jpg"),
        ("straße/2", "https://cdn.example.com/2.jpg"),
    ]
    # classifications have no place in COCO detection; predictions are no ground truth
    annotations = sorted(coco["annotations"], key=lambda a: categories[a["category_id"]][0])
    assert [
        (categories[a["category_id"]][0], a["bbox"], a["segmentation"], images[a["image_id"]]["file_name"])
        for a in annotations
    ] == [
        ("vehicle/car", [10.5, 20, 100, 50], [], "img-1"),
        ("vehicle/car/sedan", [0, 0, 10.25, 10], [[0, 0, 10.25, 0, 10, 10]], "img-1"),
    ]
    assert (annotations[0]["area"], annotations[0]["iscrowd"], annotations[0]["occluded"]) == (5000, 0, True)
    assert job["counters"] == {"datarows": 3, "labels": 2, "predictions": 0}
    # and a COCO import reads it back: the same images and objects
    with tenant_scope(TENANT_A):
        copy = dataset_make(project=tenant_dataset.project, name="coco-copy")
        (import_root / "export.coco.json").write_bytes(exported)
        dataset_import_run(
            dataset=copy,
            uri=str(import_root / "export.coco.json"),
            options=ImportOptions(format="coco"),
            source="import:coco",
            user="tester",
            progress=lambda counters, errors: None,
        )

    def objects(dataset) -> dict:
        return {
            external_id: (
                uri,
                sorted((label[0], label[1], label[2:6], label[7]) for label in labels if label[1] != "classification"),
            )
            for external_id, (uri, _, _, _, _, _, labels, _) in _contents(dataset)["rows"].items()
        }

    assert objects(copy) == objects(tenant_dataset)


def test_any_datarow_queryset_exports_in_keyset_batches(tenant_dataset, import_records):
    """A slice or an id range exports through the same code: the exporter takes any datarow queryset."""
    import_records([{"external_id": f"img-{i}", "uri": f"s3://b/{i}.jpg"} for i in range(7)])
    with tenant_scope(TENANT_A):
        ids = list(DataRow.objects.filter(dataset=tenant_dataset).order_by("id").values_list("id", flat=True))
        id_range = DataRow.objects.filter(dataset=tenant_dataset, id__gte=ids[1], id__lte=ids[5])
        batches = [[row["id"] for row in batch.datarows] for batch in export_batches(id_range, batch_rows=2)]
        reports = []
        counters = datarows_export(
            datarows=id_range,
            project_id=tenant_dataset.project_id,
            export_format="jsonl",
            job_id="range-test",
            progress=lambda c: reports.append(c.datarows),
        )
        written = export_path(job_id="range-test", export_format="jsonl").read_bytes().splitlines()
    assert batches == [ids[1:3], ids[3:5], ids[5:6]]
    assert counters.datarows == 5 and reports == [5]
    assert [orjson.loads(line)["external_id"] for line in written] == [f"img-{i}" for i in range(1, 6)]


def test_an_export_holds_the_datarows_as_they_were_when_it_began(tenant_dataset, import_records, monkeypatch):
    # given five datarows, exported two at a time
    import_records(
        [
            {"external_id": f"img-{i}", "uri": f"s3://b/{i}.jpg", "tags": ["old"], "labels": [{"class": "vehicle/car"}]}
            for i in range(5)
        ]
    )
    monkeypatch.setattr(exports, "export_batches", partial(export_batches, batch_rows=2))
    with tenant_scope(TENANT_A):
        ids = list(DataRow.objects.filter(dataset=tenant_dataset).order_by("id").values_list("id", flat=True))
        changed = []

        def change_after_the_first_batch(counters):
            # when: other sessions commit an edit, a delete and a new datarow while the export runs
            if not changed:
                DataRow.objects.filter(pk=ids[2]).update(tags=["new"])
                Label.objects.filter(datarow_id=ids[3]).delete()
                DataRow.objects.filter(pk=ids[4]).delete()
                DataRow.objects.create(dataset=tenant_dataset, external_id="img-new", uri="s3://b/new.jpg")
                changed.append(counters.datarows)

        counters = datarows_export(
            datarows=DataRow.objects.filter(dataset=tenant_dataset),
            project_id=tenant_dataset.project_id,
            export_format="jsonl",
            job_id="snapshot-test",
            progress=change_after_the_first_batch,
        )
        written = [
            orjson.loads(line)
            for line in export_path(job_id="snapshot-test", export_format="jsonl").read_bytes().splitlines()
        ]
    # then: the file is the dataset as it was when the export began
    assert changed == [2] and counters.datarows == 5
    assert [row["external_id"] for row in written] == [f"img-{i}" for i in range(5)]
    assert all(row["tags"] == ["old"] and len(row["labels"]) == 1 for row in written)
    assert not any(thread.name == "export-snapshot" for thread in threading.enumerate())


def test_an_error_in_the_snapshot_reads_reaches_the_caller(tenant_dataset):
    def failing():
        yield DataRow.objects.using("default").filter(dataset=tenant_dataset).count()
        raise LookupError("read failed")

    with tenant_scope(TENANT_A), snapshot_reads(failing) as items:
        assert next(items) == 0
        with pytest.raises(LookupError, match="read failed"):
            next(items)


def test_a_cancelled_export_leaves_no_file_behind(tenant_dataset, import_records):
    import_records([{"external_id": f"img-{i}", "uri": f"s3://b/{i}.jpg"} for i in range(3)])

    def cancel(counters):
        raise JobCancelled("cancel requested")

    with tenant_scope(TENANT_A):
        with pytest.raises(JobCancelled):
            datarows_export(
                datarows=DataRow.objects.filter(dataset=tenant_dataset),
                project_id=tenant_dataset.project_id,
                export_format="coco",
                job_id="cancelled-test",
                progress=cancel,
            )
        folder = export_path(job_id="cancelled-test", export_format="coco").parent
        assert list(folder.iterdir()) == []


def test_download_needs_a_succeeded_export_of_this_dataset(tenant_dataset, import_records, make_token, api_client):
    # given an export still queued, and one of another dataset
    with tenant_scope(TENANT_A):
        other = dataset_make(project=tenant_dataset.project, name="other")
        queued = Job.objects.create(
            kind="dataset-export",
            params={"dataset_id": tenant_dataset.pk, "export_format": "jsonl"},
            workspace_id="ws-1",
            owner_id="someone",
            celery_task_id="t-1",
        )
        foreign = Job.objects.create(
            kind="dataset-export",
            params={"dataset_id": other.pk, "export_format": "jsonl"},
            workspace_id="ws-1",
            owner_id="someone",
            celery_task_id="t-2",
            status=Job.Status.SUCCEEDED,
        )
    wait_for_reader()
    client = api_client(make_token(TENANT_A))
    # when
    not_ready = client.get(_url(tenant_dataset, f"/{queued.pk}/file"))
    not_ours = client.get(_url(tenant_dataset, f"/{foreign.pk}/file"))
    bad_format = client.post(_url(tenant_dataset), {"format": "pascal-voc"}, format="json")
    viewer = api_client(make_token(TENANT_A, role="viewer")).post(
        _url(tenant_dataset), {"format": "jsonl"}, format="json"
    )
    # then
    assert not_ready.status_code == 409 and not_ready.json()["extra"] == {"status": "queued"}
    assert not_ours.status_code == 404
    assert bad_format.status_code == 400 and "format" in bad_format.json()["extra"]["fields"]
    assert viewer.status_code == 403


@pytest.fixture
def export_worker(django_db_setup, auth0, platform, tmp_path_factory, settings, import_root):
    """A real Celery worker consuming from Redis, writing to the same storage folder as this process reads."""
    purge_task_queues()
    log_dir = tmp_path_factory.mktemp("export-worker")
    worker = start_celery_worker(
        live_environment(
            auth0, platform, MLOPS_STORAGE_ROOT=settings.STORAGE_ROOT, MLOPS_LOCAL_READ_ROOT=import_root.parent
        ),
        log_dir,
        name="export-worker",
    )
    yield worker
    worker.stop()


def test_a_real_worker_runs_the_export_job(tenant_dataset, import_records, make_token, api_client, export_worker):
    # given
    import_records(RECORDS)
    client = api_client(make_token(TENANT_A))
    # when the job is queued through the API and a worker takes it from Redis
    started = client.post(_url(tenant_dataset), {"format": "jsonl"}, format="json")
    assert started.status_code == 202, started.content
    job = wait_until(
        lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(
            client.get(f"/api/v1/jobs/{started.json()['id']}").json()
        ),
        timeout=60,
        what="the export job to end",
        interval=0.2,
        logs_of=(export_worker,),
    )
    # then
    assert job["status"] == "succeeded", job
    downloaded = client.get(_url(tenant_dataset, f"/{job['id']}/file"))
    lines = b"".join(downloaded.streaming_content).splitlines()
    assert sorted(orjson.loads(line)["external_id"] for line in lines) == ["img-1", "img-3", "straße/2"]
    assert job["counters"] == {"datarows": 3, "labels": 3, "predictions": 3} and job["finished_at"]
