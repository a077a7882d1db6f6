"""Model versions and predictions moved from the predictions app to datasets by a state-only migration: a tenant
that holds rows at the old state keeps them, readable through the new models, once it migrates forward."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_tenants.utils import schema_context

from datasets.models import DataRow, Dataset, ModelVersion, OntologyClass, Prediction
from projects.models import Project
from tenancy.models import Tenant

pytestmark = pytest.mark.django_db

BEFORE_THE_MOVE = [("datasets", "0006_datarow_tags_metadata_gin"), ("predictions", "0005_prediction_run_splits")]


def test_a_tenant_migrated_across_the_move_keeps_its_predictions():
    # given: a tenant whose schema stands before the move, holding a model version and a prediction
    schema = "move_predictions"
    Tenant.objects.create(schema_name=schema, name="Before the move")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    for app_label, migration in BEFORE_THE_MOVE:
        call_command("migrate_schemas", app_label, migration, schema_name=schema, interactive=False, verbosity=0)
    with schema_context(schema):
        old = MigrationExecutor(connection).loader.project_state(BEFORE_THE_MOVE).apps
        assert "modelversion" not in {model._meta.model_name for model in old.get_app_config("datasets").get_models()}
        project = Project.objects.create(workspace_id="ws-1", name="p", created_by="tester")
        dataset = Dataset.objects.create(project=project, name="d")
        datarow = DataRow.objects.create(dataset=dataset, external_id="a", uri="file:///a.png")
        cat = OntologyClass.objects.create(project=project, name="cat")
        old_version = old.get_model("predictions", "ModelVersion").objects.create(
            project_id=project.pk, name="resnet", version="1"
        )
        old.get_model("predictions", "Prediction").objects.create(
            kind="classification",
            datarow_id=datarow.pk,
            model_version_id=old_version.pk,
            ontology_class_id=cat.pk,
            score=0.75,
        )
        with connection.cursor() as cursor:
            # The test's transaction holds the rows' deferred key checks; a migration's CREATE INDEX needs them done.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    # when: it migrates forward
    call_command("migrate_schemas", schema_name=schema, interactive=False, verbosity=0)

    # then: the same rows, through the models' new home
    with schema_context(schema):
        prediction = Prediction.objects.select_related("model_version").get()
        assert (prediction.datarow_id, prediction.ontology_class_id, prediction.score) == (datarow.pk, cat.pk, 0.75)
        assert prediction.model_version == ModelVersion.objects.get(pk=old_version.pk)
        assert (prediction.model_version.name, prediction.model_version.version) == ("resnet", "1")
        assert list(ModelVersion.objects.get(pk=old_version.pk).runs.all()) == []
