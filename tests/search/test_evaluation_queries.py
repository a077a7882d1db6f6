"""Errors found by query: evaluation(...) over a small hand-built set of evaluation runs, through REST on both
engines (Elasticsearch on the fake server), and the 400s of runs a query cannot name."""

import pytest

from datasets.models import OntologyClass
from evaluations.models import ObjectMatch
from jobs.models import Job
from search.engines.elasticsearch_documents import alias_name, evaluation_mapping
from search.indexing import services
from search.queries import evaluation_runs
from tests.conftest import TENANT_A
from tests.factories import datarows_make, dataset_make, evaluation_run_make, model_version_make, project_make

pytestmark = pytest.mark.django_db(databases=["default", "reader"])

# The issue's four examples and two more forms, with the rows each selects (r0..r5). `{run}` is det@2's latest run.
EXAMPLES = [
    ("evaluation(model = 'det@2' AND outcome = 'fn' AND class = 'car')", [0]),
    ("evaluation(run = {run} AND outcome = 'fp' AND class = 'person' AND score > 0.8)", [2]),
    ("evaluation(run = {run} AND side = 'label' AND iou BETWEEN 0.1 AND 0.5)", [0, 4]),
    ("evaluation(run = {run} AND outcome = 'fn' AND class = 'truck' AND predicted_class = 'bus')", [4]),
    ("COUNT(evaluation WHERE run = {run} AND side = 'label' AND outcome = 'fn') >= 1", [0, 4, 5]),
    ("NOT evaluation(run = {run} AND predicted_class = 'truck')", [1, 2, 3, 4, 5]),
    # a missed truck no prediction overlapped has no predicted class, so it is not 'bus'
    ("evaluation(run = {run} AND outcome = 'fn' AND predicted_class != 'bus')", [0, 5]),
    ("evaluation(run = {run} AND outcome = 'fn' AND predicted_class IS NULL)", [5]),
]


def _match(run, row, side, outcome, cls, predicted=None, iou=None, score=None) -> ObjectMatch:
    return ObjectMatch(
        run=run,
        datarow=row,
        side=side,
        outcome=outcome,
        ontology_class=cls,
        predicted_class=predicted,
        iou=iou,
        score=score,
    )


@pytest.fixture
def evaluated(project):
    """Six rows; det@2 evaluated twice (the later run is its latest), det@1's run still running."""
    dataset = dataset_make(project=project)
    rows = datarows_make(dataset=dataset, count=6)
    car, person, truck, bus = (
        OntologyClass.objects.create(project=project, name=name) for name in ("car", "person", "truck", "bus")
    )
    det1, det2 = (model_version_make(project=project, name="det", version=version) for version in ("1", "2"))
    older = evaluation_run_make(model_version=det2)
    latest = evaluation_run_make(model_version=det2)
    running = evaluation_run_make(model_version=det1, status=Job.Status.RUNNING)
    ObjectMatch.objects.bulk_create(
        [
            # a car missed, a truck predicted over it
            _match(latest, rows[0], "label", "fn", car, truck, iou=0.3, score=0.6),
            # missed only by the older run
            _match(older, rows[1], "label", "fn", car),
            _match(latest, rows[1], "label", "tp", car, car, iou=0.8, score=0.9),
            _match(latest, rows[2], "prediction", "fp", person, score=0.9),
            _match(latest, rows[3], "prediction", "fp", person, score=0.5),
            _match(latest, rows[3], "label", "tp", person, person, iou=0.95, score=0.7),
            # a truck predicted as a bus
            _match(latest, rows[4], "label", "fn", truck, bus, iou=0.4, score=0.8),
            # a truck no prediction overlapped; a car found at IoU 0.55
            _match(latest, rows[5], "label", "fn", truck),
            _match(latest, rows[5], "label", "tp", car, car, iou=0.55, score=0.9),
            _match(running, rows[5], "label", "fn", car),
        ]
    )
    return project, dataset, [row.pk for row in rows], {"older": older.pk, "latest": latest.pk, "running": running.pk}


def _search(client, project_id: int, text: str):
    return client.post(f"/api/v1/projects/{project_id}/search", {"query": text, "page_size": 100}, format="json")


@pytest.mark.parametrize("engine", ["postgres", "elasticsearch"])
def test_errors_found_by_query_on_both_engines(engine, evaluated, on_elasticsearch, settings, make_token, api_client):
    project, dataset, row_ids, runs = evaluated
    if engine == "elasticsearch":
        services.index_dataset(
            tenant_schema=TENANT_A, project_id=project.pk, dataset_id=dataset.pk, since=None, using="default"
        )
    settings.SEARCH_ENGINE = engine
    client = api_client(make_token(TENANT_A))
    for example, rows in EXAMPLES:
        text = example.format(run=runs["latest"])
        response = _search(client, project.pk, text)
        assert response.status_code == 200, response.content
        assert [row["id"] for row in response.json()["results"]] == [row_ids[i] for i in rows], text


def test_the_documents_carry_the_runs_matches(evaluated, on_elasticsearch):
    project, dataset, row_ids, runs = evaluated
    services.index_dataset(
        tenant_schema=TENANT_A, project_id=project.pk, dataset_id=dataset.pk, since=None, using="default"
    )
    documents = on_elasticsearch.documents(alias_name(TENANT_A, project.pk))
    assert documents[str(row_ids[4])]["evaluation_matches"] == [
        {
            "run": runs["latest"],
            "side": "label",
            "outcome": "fn",
            "class": "truck",
            "class_ancestors": ["truck"],
            "predicted_class": "bus",
            "predicted_class_ancestors": ["bus"],
            "iou": 0.4,
            "score": 0.8,
        }
    ]
    assert documents[str(row_ids[2])]["evaluation_matches"] == [
        {
            "run": runs["latest"],
            "side": "prediction",
            "outcome": "fp",
            "class": "person",
            "class_ancestors": ["person"],
            "score": 0.9,
        }
    ]


def test_a_run_a_query_cannot_name_is_a_400_that_names_it(evaluated, make_token, api_client):
    project, _, _, runs = evaluated
    other = project_make()
    elsewhere = evaluation_run_make(model_version=model_version_make(project=other, name="det"))
    client = api_client(make_token(TENANT_A))
    # (query, what the message says, line and column of the caret)
    cases = [
        (f"evaluation(run = {elsewhere.pk} AND outcome = 'fn')", f"unknown evaluation run {elsewhere.pk}", (1, 18)),
        ("label(class = 'car') AND\nevaluation(run = 987654321)", "unknown evaluation run 987654321", (2, 18)),
        (f"evaluation(run = {runs['running']})", f"evaluation run {runs['running']} has not succeeded", (1, 18)),
        ("evaluation(model = 'det@1' AND class = 'car')", "'det@1' has no succeeded evaluation run", (1, 20)),
        ("evaluation(model = 'det@3')", "unknown model version 'det@3'", (1, 20)),
        ("COUNT(evaluation WHERE outcome = 'fn') > 1", "name their run", (1, 1)),
        ("evaluation(model = 'det@2' AND outcome = 'missed')", "outcome is one of 'tp', 'fp', 'fn'", (1, 42)),
    ]
    for text, message, (line, column) in cases:
        response = _search(client, project.pk, text)
        assert response.status_code == 400, text
        body = response.json()
        assert message in body["message"], text
        assert (body["extra"]["line"], body["extra"]["column"]) == (line, column), text


def test_the_boundary_reads_the_projects_runs_and_each_models_latest_succeeded_one(evaluated):
    project, _, _, runs = evaluated
    other = project_make()
    evaluation_run_make(model_version=model_version_make(project=other, name="det", version="2"))
    # when
    found = evaluation_runs(project_id=project.pk, using="default")
    # then: another project's runs are not among them; det@1's only run is still running
    assert dict(found.statuses) == {runs["older"]: "succeeded", runs["latest"]: "succeeded", runs["running"]: "running"}
    assert dict(found.latest) == {"det@2": runs["latest"]}
    assert found.latest.get("det@1") is None and found.statuses.get(runs["latest"] + 1000) is None


def test_an_index_made_before_evaluation_matches_gets_the_field_on_its_next_write(evaluated, on_elasticsearch):
    project, dataset, row_ids, _ = evaluated
    services.index_dataset(
        tenant_schema=TENANT_A, project_id=project.pk, dataset_id=dataset.pk, since=None, using="default"
    )
    (index,) = on_elasticsearch.resolve(alias_name(TENANT_A, project.pk))
    # given: the index's mapping as it was before the field existed
    del on_elasticsearch.indices[index].mappings["properties"]["evaluation_matches"]
    # when
    services.index_datarows(tenant_schema=TENANT_A, project_id=project.pk, datarow_ids=row_ids[:1], using="default")
    # then
    assert on_elasticsearch.indices[index].mappings["properties"]["evaluation_matches"] == evaluation_mapping()
