import random
from dataclasses import dataclass, field

import orjson
import pytest

from search.ql.validation import NO_EVALUATION_RUNS, EvaluationRuns
from tests.conftest import TENANT_A
from tests.factories import dataset_make, evaluation_run_make, principal_make, project_make
from tests.search.dataset import random_records

DATAROWS = 80


@dataclass(frozen=True)
class SearchData:
    project_id: int
    dataset_ids: list[int]
    rows: list[dict]
    catalog: dict[str, str]
    slices: dict = field(default_factory=dict)  # name -> SliceDefinition, for validate(..., slices=...)
    evaluation_runs: EvaluationRuns = NO_EVALUATION_RUNS  # for validate(..., evaluation_runs=...)

    @property
    def run_names(self) -> tuple[int | str, ...]:
        """What random evaluation conditions name: each succeeded run's id, each model version with one."""
        runs = self.evaluation_runs
        return (*(run for run, status in runs.statuses.items() if status == "succeeded"), *runs.latest)


def _reference_rows(dataset_ids: list[int]) -> list[dict]:
    """The stored datarows as the reference evaluator's dicts, read back so both engines see the same values."""
    from datasets.models import DataRow, Label, Prediction
    from evaluations.models import ObjectMatch
    from slices.models import SliceMember

    rows = {
        row["id"]: {**row, "labels": [], "predictions": []}
        for row in DataRow.objects.filter(dataset_id__in=dataset_ids).values(
            "id", "external_id", "uri", "width", "height", "created_at", "updated_at", "dataset_id", "metadata", "tags"
        )
    }
    object_fields = ("datarow_id", "kind", "x", "y", "w", "h", "area", "attributes")
    for label in Label.objects.filter(datarow_id__in=rows).values(*object_fields, "ontology_class__name"):
        rows[label["datarow_id"]]["labels"].append({**label, "class": label["ontology_class__name"]})
    for prediction in Prediction.objects.filter(datarow_id__in=rows).values(
        *object_fields, "score", "ontology_class__name", "model_version__name", "model_version__version"
    ):
        rows[prediction["datarow_id"]]["predictions"].append(
            {
                **prediction,
                "class": prediction["ontology_class__name"],
                "model": f"{prediction['model_version__name']}@{prediction['model_version__version']}",
            }
        )
    for datarow_id, slice_id in SliceMember.objects.filter(datarow_id__in=rows).values_list("datarow_id", "slice_id"):
        rows[datarow_id].setdefault("slice_ids", []).append(slice_id)
    for match in ObjectMatch.objects.filter(datarow_id__in=rows).values(
        "datarow_id", "run_id", "side", "outcome", "ontology_class__name", "predicted_class__name", "iou", "score"
    ):
        rows[match["datarow_id"]].setdefault("evaluation_matches", []).append(
            {
                "run": match["run_id"],
                "side": match["side"],
                "outcome": match["outcome"],
                "class": match["ontology_class__name"],
                "predicted_class": match["predicted_class__name"],
                "iou": match["iou"],
                "score": match["score"],
            }
        )
    return list(rows.values())


# Evaluation runs of the random data: (model version, its job's status), in the order they are made.
EVALUATION_RUNS = [(("yolo", "1"), "succeeded"), (("detr", "1"), "succeeded"), (("yolo", "1"), "succeeded")]
EVALUATION_RUNS += [(("yolo", "2"), "failed")]
IOUS = [0.05, 0.1, 0.3, 0.45, 0.5, 0.75, 0.9]


def _evaluation_runs(project, dataset_ids: list[int]) -> EvaluationRuns:
    """Runs over two thirds of the first dataset's rows (a slice's worth), written as the evaluation job stores
    matches: each label a TP or an FN (with its best-overlapping prediction's class, IoU and score, or none), each of
    the model's predictions a TP or an FP. Outcomes are drawn, not computed: the queries only read what is stored.

    The first rows and the second dataset are left out: the Elasticsearch engine's tests delete them, and a
    datarow's matches do not go with it yet (the evaluations app has no database cascade, as slice members do)."""
    from datasets.models import DataRow, Label, ModelVersion, OntologyClass, Prediction
    from evaluations.models import ObjectMatch

    rng = random.Random(11)
    classes = list(OntologyClass.objects.filter(project=project).values_list("id", flat=True))
    datarow_ids = sorted(DataRow.objects.filter(dataset_id=dataset_ids[0]).values_list("id", flat=True))[5:]
    statuses, latest = {}, {}
    for (name, version), status in EVALUATION_RUNS:
        model_version = ModelVersion.objects.get(project=project, name=name, version=version)
        run = evaluation_run_make(model_version=model_version, status=status)
        statuses[run.pk] = status
        if status == "succeeded":
            latest[f"{name}@{version}"] = run.pk
        scope = rng.sample(datarow_ids, len(datarow_ids) * 2 // 3)
        matches = []
        for label in Label.objects.filter(datarow_id__in=scope).order_by("id"):
            found = rng.random() < 0.5
            overlaps = found or rng.random() < 0.6
            matches.append(
                ObjectMatch(
                    run=run,
                    datarow_id=label.datarow_id,
                    side="label",
                    outcome="tp" if found else "fn",
                    label_id=label.pk,
                    ontology_class_id=label.ontology_class_id,
                    predicted_class_id=(label.ontology_class_id if found else rng.choice(classes))
                    if overlaps
                    else None,
                    iou=rng.choice(IOUS[4:] if found else IOUS[:4]) if overlaps else None,
                    score=round(rng.random(), 2) if overlaps else None,
                )
            )
        for prediction in Prediction.objects.filter(datarow_id__in=scope, model_version=model_version).order_by("id"):
            found = rng.random() < 0.5
            matches.append(
                ObjectMatch(
                    run=run,
                    datarow_id=prediction.datarow_id,
                    side="prediction",
                    outcome="tp" if found else "fp",
                    prediction_id=prediction.pk,
                    ontology_class_id=prediction.ontology_class_id,
                    predicted_class_id=prediction.ontology_class_id if found else None,
                    iou=rng.choice(IOUS[4:]) if found else rng.choice([None, *IOUS[:4]]),
                    score=prediction.score,
                )
            )
        ObjectMatch.objects.bulk_create(matches)
    return EvaluationRuns(statuses, latest)


SLICE_NAMES = ("picked", "rainy frozen", "rainy live", "first live", "picked or rainy")


def _slices(project, datarow_ids: list[int]) -> dict:
    """An ids slice of random rows, a frozen and a live slice of one query, a live slice of one dataset and a live
    slice over two others, so generated queries can name slices of every kind (SLICE_NAMES)."""
    from slices.selectors import slice_definitions
    from slices.services import slice_create_from_ids, slice_create_live, slice_freeze_start

    creator = principal_make(tenant=TENANT_A, user_id="tester")
    rainy = "metadata.weather IN ('rain', 'fog') OR tags = 'rain'"
    slice_create_from_ids(
        project=project,
        name="picked",
        created_by="tester",
        datarow_ids=random.Random(5).sample(datarow_ids, len(datarow_ids) // 3),
    )
    slice_freeze_start(principal=creator, project=project, name="rainy frozen", query=rainy)
    slice_create_live(project=project, name="rainy live", created_by="tester", query=rainy)
    first = project.datasets.order_by("id").first()
    slice_create_live(project=project, name="first live", created_by="tester", query="", dataset_id=first.pk)
    slice_create_live(
        project=project, name="picked or rainy", created_by="tester", query="IN SLICE 'picked' OR IN SLICE 'rainy live'"
    )
    definitions = slice_definitions(project_id=project.pk, using="default")
    return {name: definitions[name] for name in SLICE_NAMES}


@pytest.fixture(scope="module")
def search_data(django_db_setup, django_db_blocker, tmp_path_factory):
    """One project with two datasets of random datarows, loaded once per module with the import service.

    Committed in tenant A, so every test of the module reads it without a transaction of its own.
    """
    from django.test import override_settings

    from datasets.models import DataRow, FieldCatalogEntry
    from datasets.services.datasets import dataset_delete_rows
    from datasets.services.imports import ImportOptions, dataset_import_run
    from evaluations.models import EvaluationRun
    from projects.services import project_delete
    from tenancy.context import tenant_scope
    from tenancy.services import tenant_provision

    root = tmp_path_factory.mktemp("search-imports")
    records = random_records(seed=20261127, count=DATAROWS)
    with django_db_blocker.unblock(), override_settings(LOCAL_READ_ROOT=root, STORAGE_ROOT=root / "storage"):
        tenant_provision(schema_name=TENANT_A, name="Acme", if_missing=True)
        with tenant_scope(TENANT_A):
            project = project_make()
            datasets = [dataset_make(project=project, name=name) for name in ("first", "second")]
            for dataset, part in zip(datasets, (records[: DATAROWS // 2], records[DATAROWS // 2 :]), strict=True):
                path = root / TENANT_A / f"{dataset.name}.jsonl"
                path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in part))
                counters = dataset_import_run(
                    dataset=dataset,
                    uri=str(path),
                    options=ImportOptions(create_classes=True),
                    source="import:search",
                    user="tester",
                    progress=lambda counters, errors: None,
                )
                assert counters.errors == 0
            dataset_ids = [dataset.pk for dataset in datasets]
            catalog = dict(FieldCatalogEntry.objects.filter(project=project).values_list("path", "field_type"))
            slices = _slices(
                project, sorted(DataRow.objects.filter(dataset_id__in=dataset_ids).values_list("id", flat=True))
            )
            evaluation_runs = _evaluation_runs(project, dataset_ids)
            rows = _reference_rows(dataset_ids)
    yield SearchData(project.pk, dataset_ids, rows, catalog, slices, evaluation_runs)
    # Committed data outlives the module: remove it so later tests in tenant A start from what they expect.
    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        # The runs' matches first: they refer to the datarows the set-based delete removes.
        EvaluationRun.objects.filter(project_id=project.pk).delete()
        for dataset_id in dataset_ids:
            dataset_delete_rows(dataset_id=dataset_id, progress=lambda deleted: None)
        project_delete(project=project)


@pytest.fixture(scope="module")
def postgres_ids(django_db_blocker):
    """`postgres_ids(query, project_id, dataset_id=None)`: the PostgreSQL engine's answer, read in tenant A."""
    from tenancy.context import tenant_scope
    from tests.search.postgres_queries import datarow_ids

    def run(query, project_id: int, dataset_id: int | None = None) -> list[int]:
        with django_db_blocker.unblock(), tenant_scope(TENANT_A):
            return datarow_ids(query, project_id=project_id, dataset_id=dataset_id)

    return run


@pytest.fixture(scope="session")
def fake_elasticsearch_server():
    from tests.search.fake_elasticsearch import FakeElasticsearch

    server = FakeElasticsearch().start()
    yield server
    server.stop()


@pytest.fixture
def on_elasticsearch(fake_elasticsearch_server, settings):
    """The Elasticsearch engine, on an empty fake server."""
    from search.engines.elasticsearch_engine import _client

    fake_elasticsearch_server.reset()
    settings.SEARCH_ENGINE = "elasticsearch"
    settings.ELASTICSEARCH_URL = fake_elasticsearch_server.url
    _client.cache_clear()
    yield fake_elasticsearch_server
    _client.cache_clear()
