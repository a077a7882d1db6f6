"""Models and training runs over REST, with the job run eagerly in the test process (the real trainer, tiny data)."""

import json
import sys
from pathlib import Path

import pytest

from datasets.models import Label, OntologyClass
from jobs.models import Job
from slices.services import slice_create_live
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.factories import model_version_make
from tests.training.conftest import TINY_CONFIG, make_image_data
from training.models import ModelDefinition, TrainingExample, TrainingRun
from training.selectors import training_examples
from training.services import training_run_start

pytestmark = pytest.mark.django_db

CONSTANT_TRAINER = "tests.training.test_core_registry:ConstantTrainer"
EXITING_TRAINER = "tests.training.exiting_plugin:Trainer"


@pytest.fixture
def client(make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.fixture
def data(storage):
    with tenant_scope(TENANT_A):
        return make_image_data(storage)


def _model(client, data, **changes) -> dict:
    body = {"name": "colours", "trainer": "image-classifier", "hyperparameters": TINY_CONFIG, **changes}
    response = client.post(f"/api/v1/projects/{data.project.pk}/models", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_model_keeps_its_hyperparameters_with_the_trainers_defaults_filled_in(client, data):
    model = _model(client, data, hyperparameters={"epochs": 3})
    assert model["hyperparameters"]["epochs"] == 3
    assert {"architecture", "image_size", "batch_size", "learning_rate", "seed"} <= model["hyperparameters"].keys()
    listed = client.get(f"/api/v1/projects/{data.project.pk}/models").json()["results"]
    assert [m["id"] for m in listed] == [model["id"]]


@pytest.mark.parametrize(
    ("hyperparameters", "key"),
    [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"architecture": "vgg99"}, "architecture"),
        ({"colour": "red"}, "colour"),
        ({"cache": "decoded", "cache_dir": "/etc"}, "cache_dir"),
    ],
)
def test_a_bad_hyperparameter_is_a_400_naming_the_key(client, data, hyperparameters, key):
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models",
        {"name": "bad", "trainer": "image-classifier", "hyperparameters": hyperparameters},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert list(response.json()["extra"]["fields"]) == [f"hyperparameters.{key}"]


def test_a_bad_config_is_one_400_that_names_every_bad_key(client, data):
    # given: a model's hyperparameters and a run's config overrides, each with several mistakes
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models",
        {"name": "bad", "hyperparameters": {"epochs": 0, "learning_rate": -1, "cache_dir": "/etc", "colour": "red"}},
        format="json",
    )
    model = _model(client, data)
    run = client.post(
        f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs",
        {"slice_id": data.slice.pk, "config": {"batch_size": 0, "device": "tpu"}},
        format="json",
    )
    # then: each answer lists them all, keyed by their path in the body
    assert response.status_code == 400, response.content
    fields = response.json()["extra"]["fields"]
    assert fields.keys() == {
        "hyperparameters.epochs",
        "hyperparameters.learning_rate",
        "hyperparameters.cache_dir",
        "hyperparameters.colour",
    }
    assert fields["hyperparameters.cache_dir"] == ["chosen by the platform; leave it out"]
    assert "from 1 to 10000" in fields["hyperparameters.epochs"][0]
    assert run.status_code == 400, run.content
    assert run.json()["extra"]["fields"].keys() == {"config.batch_size", "config.device"}
    with tenant_scope(TENANT_A):
        assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    "trainer",
    [
        "sys:exit",
        "this:x",
        ".x:Y",
        "os:system",
        "no.such.module:Trainer",
        CONSTANT_TRAINER,
    ],
)
def test_a_trainer_is_chosen_by_registered_name_only_and_a_path_is_a_400_that_imports_nothing(client, data, trainer):
    # given: `this` prints the Zen of Python when imported, so it must stay out of sys.modules
    sys.modules.pop("this", None)
    # when
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models", {"name": "bad", "trainer": trainer}, format="json"
    )
    # then: a 400 on the trainer field that lists the registered names; nothing was imported or run
    assert response.status_code == 400, response.content
    body = response.json()
    assert (
        body["message"]
        == f"Unknown trainer {trainer!r}: use one of detector-faster-rcnn, detector-fcos, image-classifier."
    )
    assert body["extra"]["fields"] == {"trainer": [body["message"]]}
    assert "this" not in sys.modules
    with tenant_scope(TENANT_A):
        assert not ModelDefinition.objects.exists()
    # and the process goes on serving
    assert _model(client, data)["trainer"] == "image-classifier"


def test_a_plugin_registered_in_trainer_plugins_is_chosen_by_its_name(client, data, settings):
    settings.TRAINER_PLUGINS = {"constant": CONSTANT_TRAINER}

    model = _model(client, data, trainer="constant", hyperparameters={})

    assert (model["trainer"], model["hyperparameters"]) == ("constant", {"answer": 0})


def test_a_registered_plugin_that_exits_on_import_is_a_400_on_the_trainer_field(client, data, settings):
    settings.TRAINER_PLUGINS = {"exiting": EXITING_TRAINER}

    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models", {"name": "bad", "trainer": "exiting"}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["extra"]["fields"] == {
        "trainer": [
            f"Trainer 'exiting' ({EXITING_TRAINER}) could not be loaded: SystemExit: this plugin exits on import"
        ]
    }


def test_a_plugin_that_exits_when_the_worker_loads_it_fails_the_run_and_a_new_run_is_a_400(
    client, data, settings, celery_eager, django_capture_on_commit_callbacks
):
    # given: a run queued while "plugin" loads, then a deployment whose "plugin" exits on import
    settings.TRAINER_PLUGINS = {"plugin": CONSTANT_TRAINER}
    model = _model(client, data, trainer="plugin", hyperparameters={})
    runs = f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs"
    with django_capture_on_commit_callbacks(execute=False) as queued:
        started = client.post(runs, {"slice_id": data.slice.pk}, format="json")
    assert started.status_code == 202, started.content
    settings.TRAINER_PLUGINS = {"plugin": EXITING_TRAINER}
    # when: the job runs (eagerly, in this process)
    for send in queued:
        send()
    # then: the run failed saying why, and this process is still here to say so
    run = client.get(f"/api/v1/projects/{data.project.pk}/training-runs/{started.json()['id']}").json()
    assert run["status"] == "failed"
    assert "SystemExit: this plugin exits on import" in run["error"] and run["finished_at"]
    # and a new run is refused on the trainer field
    refused = client.post(runs, {"slice_id": data.slice.pk}, format="json")
    assert refused.status_code == 400 and "SystemExit" in refused.json()["extra"]["fields"]["trainer"][0]


def test_a_run_trains_reports_per_step_stores_artifacts_and_registers_a_version(
    client, data, settings, celery_eager, django_capture_on_commit_callbacks
):
    # given
    model = _model(client, data)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs", {"slice_id": data.slice.pk}, format="json"
        )
    run = client.get(f"/api/v1/projects/{data.project.pk}/training-runs/{started.json()['id']}").json()
    # then
    assert started.status_code == 202, started.content
    assert started.json()["status"] == "queued" and started.json()["number"] == 1
    assert run["status"] == "succeeded", run["error"]
    assert (run["train_examples"], run["validation_examples"]) == (12, 4)
    assert run["classes"] == ["blue", "red"]
    assert [epoch["epoch"] for epoch in run["epochs"]] == [1, 2]
    assert all(epoch["validation_accuracy"] is not None for epoch in run["epochs"])
    assert run["device"] == "cpu" and run["error"] == ""
    assert run["config"] == model["hyperparameters"]
    # every step reported loss, accuracy, throughput and ETA on the job
    job = run["job"]
    steps_per_epoch = 3  # 12 training examples in batches of 4
    assert job["progress"] == {"done": 2 * steps_per_epoch, "total": 2 * steps_per_epoch}
    assert {"loss", "accuracy", "images_per_second", "eta_seconds", "epoch", "step"} <= job["counters"].keys()
    # artifacts: weights, class map, metrics and the exact config, in the tenant's storage
    artifacts = Path(run["artifact_uri"])
    assert artifacts.is_relative_to(Path(settings.STORAGE_ROOT) / TENANT_A)
    assert sorted(run["artifact_files"]) == sorted(p.name for p in artifacts.iterdir())
    config_files = [name for name in run["artifact_files"] if "config" in name]
    assert config_files and json.loads((artifacts / config_files[0]).read_text())["epochs"] == 2
    assert (
        "training colours run 1"
        in client.get(f"/api/v1/projects/{data.project.pk}/training-runs/{run['id']}/logs").json()["logs"]
    )
    # the version it registered
    version = client.get(f"/api/v1/projects/{data.project.pk}/model-versions/{run['model_version_id']}").json()
    assert (version["name"], version["version"], version["training_run_id"]) == ("colours", "1", run["id"])


def test_runs_are_numbered_per_model(client, data, principal, django_capture_on_commit_callbacks):
    model = _model(client, data)
    with django_capture_on_commit_callbacks(execute=False):
        numbers = [
            client.post(
                f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs",
                {"slice_id": data.slice.pk},
                format="json",
            ).json()["number"]
            for _ in range(2)
        ]
    assert numbers == [1, 2]


def test_the_snapshot_keeps_the_labels_a_run_started_with(data, principal, django_capture_on_commit_callbacks):
    # given: a run started (its job not yet run)
    with tenant_scope(TENANT_A), django_capture_on_commit_callbacks(execute=False):
        from training.services import model_definition_create

        model = model_definition_create(
            principal=principal, project=data.project, name="m", trainer="image-classifier", hyperparameters=TINY_CONFIG
        )
        run = training_run_start(
            principal=principal, model=model, slice=data.slice, train_splits=["train"], validation_splits=["validation"]
        )
        before = {(e.datarow_id, e.ontology_class_id, e.split) for e in TrainingExample.objects.filter(run=run)}
        train_before, validation_before = training_examples(run=run)
        # when: labels are edited, removed and re-imported with another class
        green = OntologyClass.objects.create(project=data.project, name="green")
        first, second = data.datarow_ids[:2]
        Label.objects.filter(datarow_id=first).update(ontology_class=green)
        Label.objects.filter(datarow_id=second).delete()
        Label.objects.create(
            datarow_id=second, ontology_class=green, kind="classification", source="import:2", updated_by="x"
        )
        # then
        assert {(e.datarow_id, e.ontology_class_id, e.split) for e in TrainingExample.objects.filter(run=run)} == before
        assert training_examples(run=run) == (train_before, validation_before)
    assert len(before) == 16
    targets = {example.key: example.target for example in train_before + validation_before}
    assert {key: ["blue", "red"][target] for key, target in targets.items()} == data.classes


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"train_splits": ["train"], "validation_splits": ["train"]}, "validation_splits"),
        ({"train_splits": ["test"]}, "slice_id"),
        ({"train_splits": ["holdout"]}, "train_splits"),
        ({"config": {"batch_size": 0}}, "config.batch_size"),
    ],
)
def test_a_run_that_cannot_train_is_refused_before_it_is_queued(client, data, body, field):
    model = _model(client, data)
    with tenant_scope(TENANT_A):
        jobs_before = Job.objects.count()
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs",
        {"slice_id": data.slice.pk, **body},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["extra"]["fields"]
    with tenant_scope(TENANT_A):
        assert not TrainingRun.objects.filter(model_id=model["id"]).exists()
        assert Job.objects.count() == jobs_before


def test_a_live_slice_must_be_frozen_first(client, data):
    model = _model(client, data)
    with tenant_scope(TENANT_A):
        live = slice_create_live(project=data.project, name="live", created_by="t", query="tags IN ('x')")
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs", {"slice_id": live.pk}, format="json"
    )
    assert response.status_code == 400 and "slice_id" in response.json()["extra"]["fields"]


def test_another_workspace_cannot_see_the_models(client, data, make_token, api_client):
    _model(client, data)
    other = api_client(make_token(TENANT_A, workspace="ws-2"))
    response = other.get(f"/api/v1/projects/{data.project.pk}/models")
    assert (response.status_code, response.json()) == (
        404,
        {"message": f"Project {data.project.pk} does not exist.", "extra": {}},
    )


def test_a_model_cannot_take_the_name_of_imported_versions_its_runs_would_collide_with(client, data):
    # given: predictions of "colours@1" were imported
    with tenant_scope(TENANT_A):
        model_version_make(project=data.project, name="colours", version="1")
    # when
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models", {"name": "colours", "hyperparameters": TINY_CONFIG}, format="json"
    )
    # then
    assert response.status_code == 409 and "name" in response.json()["extra"]["fields"]


def test_a_run_whose_version_was_imported_meanwhile_is_refused(client, data):
    # given
    model = _model(client, data)
    with tenant_scope(TENANT_A):
        model_version_make(project=data.project, name="colours", version="1")
    # when
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs", {"slice_id": data.slice.pk}, format="json"
    )
    # then
    assert response.status_code == 409 and "colours@1" in response.json()["message"]
    with tenant_scope(TENANT_A):
        assert not TrainingRun.objects.filter(model_id=model["id"]).exists()


def test_run_logs_keep_the_newest_lines_and_each_lines_head():
    from training.services import LOG_LINE_CHARS, LOG_LINES_KEPT, RunLog

    log = RunLog(TrainingRun(logs="earlier line"))
    for number in range(LOG_LINES_KEPT + 10):
        log(f"line {number}")
    log("x" * (LOG_LINE_CHARS + 50) + "\nlast")
    lines = log.text().splitlines()
    assert len(lines) == LOG_LINES_KEPT
    assert lines[0].endswith("line 12") and lines[-1].endswith(" last")
    assert lines[-2].endswith("x" * LOG_LINE_CHARS) and len(lines[-2]) == len("00:00:00 ") + LOG_LINE_CHARS


def test_a_slice_still_being_frozen_cannot_be_trained_on(client, data):
    # given: a frozen slice whose freeze job has not filled it yet
    model = _model(client, data)
    with tenant_scope(TENANT_A):
        from slices.models import Slice

        freezing = Slice.objects.create(
            project=data.project, name="freezing", kind=Slice.Kind.FROZEN, query="tags IN ('x')", created_by="t"
        )
    # when
    response = client.post(
        f"/api/v1/projects/{data.project.pk}/models/{model['id']}/runs", {"slice_id": freezing.pk}, format="json"
    )
    # then
    assert response.status_code == 409 and "still being frozen" in response.json()["message"]
