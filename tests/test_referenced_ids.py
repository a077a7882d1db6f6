"""Every id a request's body or query string names is checked when the request comes in: one that does not exist,
or belongs to another project, is a 400 naming its field, and nothing is started or written. (An id in the path
is a 404: tests/test_not_found.py.)"""

import uuid
from dataclasses import dataclass

import pytest

from jobs.models import Job
from predictions.models import PredictionRun
from slices.models import Slice
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import (
    dataset_make,
    job_make,
    model_definition_make,
    model_version_make,
    project_make,
    slice_make,
)
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

MISSING = 999_999_999


@dataclass
class Ids:
    project: int
    dataset: int
    slice: int
    model: int
    model_version: int
    prediction_run: int


def _make(*, with_run: bool) -> Ids:
    project = project_make()
    dataset = dataset_make(project=project)
    version = model_version_make(project=project)
    run_id = 0
    if with_run:
        job = job_make(kind="prediction-run", status=Job.Status.SUCCEEDED, celery_task_id=str(uuid.uuid4()))
        run_id = PredictionRun.objects.create(
            model_version=version, job=job, dataset=dataset, top_k=1, batch_size=1, created_by="test"
        ).pk
    return Ids(
        project=project.pk,
        dataset=dataset.pk,
        slice=slice_make(project=project).pk,
        model=model_definition_make(project=project).pk,
        model_version=version.pk,
        prediction_run=run_id,
    )


@pytest.fixture
def ids() -> tuple[Ids, Ids]:
    """Tenant A's project the requests go to, and another project of the same workspace whose ids they borrow."""
    with tenant_scope(TENANT_A):
        return _make(with_run=True), _make(with_run=False)


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


# (method, path, body, the field holding the foreign id); `own` and `other` are the two projects' Ids.
CASES = {
    "training run slice": lambda own, other: (
        "post",
        f"models/{own.model}/runs",
        {"slice_id": other.slice},
        "slice_id",
    ),
    "prediction run model version": lambda own, other: (
        "post",
        "prediction-runs",
        {"model_version_id": other.model_version, "slice_id": own.slice},
        "model_version_id",
    ),
    "prediction run slice": lambda own, other: (
        "post",
        "prediction-runs",
        {"model_version_id": own.model_version, "slice_id": other.slice},
        "slice_id",
    ),
    "prediction run dataset": lambda own, other: (
        "post",
        "prediction-runs",
        {"model_version_id": own.model_version, "dataset_id": other.dataset},
        "dataset_id",
    ),
    "evaluation run model version": lambda own, other: (
        "post",
        "evaluation-runs",
        {"model_version_id": other.model_version, "slice_id": own.slice},
        "model_version_id",
    ),
    "evaluation run slice": lambda own, other: (
        "post",
        "evaluation-runs",
        {"model_version_id": own.model_version, "slice_id": other.slice},
        "slice_id",
    ),
    "compare baseline": lambda own, other: (
        "post",
        "model-versions/compare",
        {"baseline_id": other.model_version, "candidate_id": own.model_version, "disagreement_slice_name": "d"},
        "baseline_id",
    ),
    "compare candidate": lambda own, other: (
        "post",
        "model-versions/compare",
        {"baseline_id": own.model_version, "candidate_id": other.model_version, "disagreement_slice_name": "d"},
        "candidate_id",
    ),
    "compare slice": lambda own, other: (
        "post",
        "model-versions/compare",
        {
            "baseline_id": own.model_version,
            "candidate_id": own.model_version,
            "slice_id": other.slice,
            "disagreement_slice_name": "d",
        },
        "slice_id",
    ),
    "metrics slice": lambda own, other: (
        "get",
        f"model-versions/{own.model_version}/metrics?slice_id={other.slice}",
        None,
        "slice_id",
    ),
    "detection metrics slice": lambda own, other: (
        "get",
        f"model-versions/{own.model_version}/detection-metrics?slice_id={other.slice}",
        None,
        "slice_id",
    ),
    "selection pool slice": lambda own, other: (
        "post",
        f"prediction-runs/{own.prediction_run}/selections",
        {"name": "s", "strategy": "least_confidence", "k": 1, "pool_slice_id": other.slice},
        "pool_slice_id",
    ),
    "box disagreement's other version": lambda own, other: (
        "post",
        f"prediction-runs/{own.prediction_run}/selections",
        {"name": "s", "strategy": "box_disagreement", "k": 1, "other_model_version_id": other.model_version},
        "other_model_version_id",
    ),
    "slice from a query in a dataset": lambda own, other: (
        "post",
        "slices/",
        {"name": "s", "kind": "frozen", "query": "", "dataset": other.dataset},
        "dataset",
    ),
    "live slice in a dataset": lambda own, other: (
        "post",
        "slices/",
        {"name": "s", "kind": "query", "query": "", "dataset": other.dataset},
        "dataset",
    ),
    "combined slices": lambda own, other: (
        "post",
        "slices/combine",
        {"name": "s", "operation": "union", "slices": [own.slice, other.slice]},
        "slices",
    ),
    "search in a dataset": lambda own, other: ("post", "search", {"dataset": other.dataset}, "dataset"),
    "bulk action in a dataset": lambda own, other: (
        "post",
        "search/bulk",
        {"action": "delete", "dataset": other.dataset},
        "dataset",
    ),
}


@pytest.mark.parametrize("missing", [False, True], ids=["another project's", "unknown"])
@pytest.mark.parametrize("case", list(CASES))
def test_an_id_the_request_names_is_checked_up_front_and_a_bad_one_is_a_400_naming_its_field(
    client, ids, case, missing
):
    # given: an id of another project of the workspace, or one that exists nowhere
    own, other = ids
    if missing:
        other = Ids(**dict.fromkeys(vars(other), MISSING))
    method, path, body, field = CASES[case](own, other)
    with tenant_scope(TENANT_A):
        before = (Job.objects.count(), Slice.objects.count(), TrainingRun.objects.count())
    # when
    response = getattr(client, method)(f"/api/v1/projects/{own.project}/{path}", body, format="json")
    # then: a 400 on that field, saying which id, and nothing started or written
    assert response.status_code == 400, response.content
    error = response.json()
    assert list(error["extra"]["fields"]) == [field]
    assert (
        str(other.slice if "slice" in field else other.dataset if "dataset" in field else other.model_version)
        in error["message"]
    )
    with tenant_scope(TENANT_A):
        assert (Job.objects.count(), Slice.objects.count(), TrainingRun.objects.count()) == before
