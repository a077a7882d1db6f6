"""Bulk actions by query (POST /api/v1/projects/{id}/search/bulk), jobs run eagerly: tag, untag and delete every
matching datarow in batches, counts kept exact, cancel between batches, roles and bad input.
(A real worker runs them in test_bulk_live.py.)"""

import pytest

from datasets.models import DataRow, Dataset, Label, Prediction
from jobs.models import Job
from jobs.services import JobCancelled
from search import services
from search.services import search_bulk_action_run
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.datasets.conftest import import_records, import_root, tenant_dataset, write_jsonl  # noqa: F401 (fixtures)
from tests.factories import dataset_make

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "reader"])

PREDICTION = {"model": "yolo", "version": "1", "class": "car", "score": 0.9}


def _row(i: int, **extra) -> dict:
    return {"external_id": f"img-{i:03d}", "uri": f"s3://bucket/{i}.jpg", **extra}


def _url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/search/bulk"


@pytest.fixture
def two_datasets(tenant_dataset, import_records):
    """Rows 0-9 in the first dataset, 10-19 in a second one of the same project; even rows have a car (and a
    prediction), every third row the tag 'old'."""
    with tenant_scope(TENANT_A):
        second = dataset_make(project=tenant_dataset.project_id, name="second")

    def rows(numbers):
        return [
            _row(
                i,
                tags=["old"] if i % 3 == 0 else [],
                labels=[{"class": "car" if i % 2 == 0 else "person"}],
                predictions=[PREDICTION] if i % 2 == 0 else [],
            )
            for i in numbers
        ]

    import_records(rows(range(10)))
    import_records(rows(range(10, 20)), dataset=second)
    return tenant_dataset, second


def _tags_by_external_id(project_id: int) -> dict[str, list[str]]:
    with tenant_scope(TENANT_A):
        return dict(DataRow.objects.filter(dataset__project_id=project_id).values_list("external_id", "tags"))


def _counts(dataset) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(the dataset's counters, the rows actually there)."""
    with tenant_scope(TENANT_A):
        dataset = Dataset.objects.get(pk=dataset.pk)
        return (
            (dataset.datarow_count, dataset.label_count, dataset.prediction_count),
            (
                DataRow.objects.filter(dataset=dataset).count(),
                Label.objects.filter(datarow__dataset=dataset).count(),
                Prediction.objects.filter(datarow__dataset=dataset).count(),
            ),
        )


def _post(client, project_id: int, body: dict, django_capture_on_commit_callbacks) -> tuple[int, dict]:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url(project_id), body, format="json")
    return response.status_code, response.json()


def _job(job_id: str) -> Job:
    with tenant_scope(TENANT_A):
        return Job.objects.get(pk=job_id)


def test_tag_by_query_tags_every_match_in_every_dataset_in_batches(
    two_datasets, make_token, api_client, celery_eager, django_capture_on_commit_callbacks, monkeypatch
):
    # given batches of 3 ids, so the 10 matches take four
    monkeypatch.setattr(services, "BULK_BATCH_ROWS", 3)
    first, _ = two_datasets
    # when
    status, job = _post(
        api_client(make_token(TENANT_A)),
        first.project_id,
        {"query": "label(class = 'car')", "action": "tag", "tags": ["has-car", "a"]},
        django_capture_on_commit_callbacks,
    )
    # then
    assert status == 202 and job["kind"] == "search-bulk-action"
    job = _job(job["id"])
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.progress_done, job.progress_total) == (10, 10)
    assert job.counters == {"matched": 10, "done": 10, "labels": 0, "predictions": 0}
    tags = _tags_by_external_id(first.project_id)
    for i in range(20):
        old = ["old"] if i % 3 == 0 else []
        assert tags[f"img-{i:03d}"] == (sorted(["a", "has-car", *old]) if i % 2 == 0 else old)


def test_untag_by_query_in_one_dataset_leaves_the_other_alone(
    two_datasets, make_token, api_client, celery_eager, django_capture_on_commit_callbacks
):
    first, second = two_datasets
    status, job = _post(
        api_client(make_token(TENANT_A)),
        first.project_id,
        {"query": "", "action": "untag", "tags": ["old"], "dataset": second.pk},
        django_capture_on_commit_callbacks,
    )
    assert status == 202
    assert _job(job["id"]).status == Job.Status.SUCCEEDED
    tags = _tags_by_external_id(first.project_id)
    assert [i for i in range(20) if tags[f"img-{i:03d}"] == ["old"]] == [0, 3, 6, 9]


def test_delete_by_query_removes_rows_labels_and_predictions_and_keeps_counts_exact(
    two_datasets, make_token, api_client, celery_eager, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(services, "BULK_BATCH_ROWS", 4)
    first, second = two_datasets
    status, job = _post(
        api_client(make_token(TENANT_A)),
        first.project_id,
        {"query": "prediction(model = 'yolo@1') AND tags = 'old'", "action": "delete"},
        django_capture_on_commit_callbacks,
    )
    assert status == 202
    job = _job(job["id"])
    assert job.status == Job.Status.SUCCEEDED, job.error
    # rows 0, 6, 12 and 18: even (a car and a prediction) and a multiple of 3 ('old')
    assert job.counters == {"matched": 4, "done": 4, "labels": 4, "predictions": 4}
    assert sorted(_tags_by_external_id(first.project_id)) == [f"img-{i:03d}" for i in range(20) if i % 6]
    for dataset in (first, second):
        counters, actual = _counts(dataset)
        assert counters == actual == (8, 8, 3)


def test_a_cancel_seen_between_batches_keeps_the_batches_done_and_stops(two_datasets, monkeypatch):
    # given batches of 4 and a progress report that asks to stop after the first batch
    monkeypatch.setattr(services, "BULK_BATCH_ROWS", 4)
    first, _ = two_datasets
    reports = []

    def progress(counters):
        reports.append(counters.done)
        if counters.done:
            raise JobCancelled("cancel requested")

    # when
    with tenant_scope(TENANT_A), pytest.raises(JobCancelled):
        search_bulk_action_run(
            project_id=first.project_id, query_text="", action="tag", tags=["seen"], dataset_id=None, progress=progress
        )
    # then only the first four rows (in id order) were tagged
    assert reports == [0, 4]
    tags = _tags_by_external_id(first.project_id)
    assert sorted(name for name, row_tags in tags.items() if "seen" in row_tags) == [f"img-{i:03d}" for i in range(4)]


def test_a_viewer_cannot_start_a_bulk_action(two_datasets, make_token, api_client):
    first, _ = two_datasets
    response = api_client(make_token(TENANT_A, role="viewer")).post(
        _url(first.project_id), {"query": "", "action": "delete"}, format="json"
    )
    assert response.status_code == 403 and "read-only" in response.json()["message"]
    with tenant_scope(TENANT_A):
        assert not Job.objects.filter(kind="search-bulk-action", params__project_id=first.project_id).exists()
        assert DataRow.objects.filter(dataset__project_id=first.project_id).count() == 20


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"query": "label(class = 'car'", "action": "tag", "tags": ["x"]}, 400, None),
        ({"query": "metadata.nope = 1", "action": "delete"}, 400, None),
        ({"query": "", "action": "tag"}, 400, "tags"),
        ({"query": "", "action": "delete", "tags": ["x"]}, 400, "tags"),
        ({"query": "", "action": "rename", "tags": ["x"]}, 400, "action"),
        ({"query": "", "action": "tag", "tags": [""]}, 400, "tags"),
        ({"query": "", "action": "delete", "dataset": 999_999_999}, 400, "dataset"),
    ],
)
def test_bad_bulk_requests_say_what_is_wrong_and_start_nothing(
    two_datasets, make_token, api_client, body, status, field
):
    first, _ = two_datasets
    response = api_client(make_token(TENANT_A)).post(_url(first.project_id), body, format="json")
    assert response.status_code == status, response.content
    assert set(response.json()) == {"message", "extra"}
    if field:
        assert field in response.json()["extra"]["fields"]
    if body["query"].startswith("label("):
        assert response.json()["extra"]["line"] == 1
    with tenant_scope(TENANT_A):
        assert not Job.objects.filter(kind="search-bulk-action", params__project_id=first.project_id).exists()
