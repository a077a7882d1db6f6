"""Indexing with the real things: a Celery worker consuming from Redis indexes into the fake Elasticsearch HTTP
server, retrying with backoff while it answers 503, and runs the reindex job to its alias swap."""

import pytest

from search.engines.elasticsearch_documents import alias_name
from tests.conftest import TENANT_A
from tests.datasets.manifests import manifest_rows, write_manifest
from tests.factories import datarows_make, dataset_make, principal_make, project_make
from tests.live_services import live_environment, purge_task_queues, start_celery_worker, wait_until

pytestmark = pytest.mark.usefixtures("committed_tenants")


@pytest.fixture
def worker(django_db_setup, auth0, platform, fake_elasticsearch_server, tmp_path):
    fake_elasticsearch_server.reset()
    purge_task_queues()
    env = live_environment(
        auth0,
        platform,
        SEARCH_ENGINE="elasticsearch",
        ELASTICSEARCH_URL=fake_elasticsearch_server.url,
        MLOPS_LOCAL_READ_ROOT=tmp_path,
    )
    worker = start_celery_worker(env, tmp_path, name="search-worker")
    yield worker
    worker.stop()


@pytest.fixture
def weather_rows(committed_tenants):
    """A committed project in tenant A with one dataset of three rows (metadata.weather); removed afterwards."""
    from datasets.models import FieldCatalogEntry
    from datasets.services.datasets import dataset_delete_rows
    from projects.services import project_delete
    from tenancy.context import tenant_scope

    with tenant_scope(TENANT_A):
        project = project_make()
        dataset = dataset_make(project=project, name="cams")
        FieldCatalogEntry.objects.create(project=project, path="weather", field_type="string", row_count=3)
        weather = ["rain", "sun", "fog"]
        rows = datarows_make(
            dataset=dataset,
            count=len(weather),
            uri=lambda i: f"/img/{i}.jpg",
            metadata=lambda i: {"weather": weather[i]},
            tags=["t"],
        )
    yield project, dataset, [row.pk for row in rows]
    with tenant_scope(TENANT_A):
        dataset_delete_rows(dataset_id=dataset.pk, progress=lambda deleted: None)
        project_delete(project=project)


def test_a_worker_indexes_changes_and_retries_while_elasticsearch_is_unavailable(
    worker, weather_rows, fake_elasticsearch_server, settings
):
    from search.indexing import datarows_changed
    from tenancy.context import tenant_scope

    project, dataset, ids = weather_rows
    alias = alias_name(TENANT_A, project.pk)
    fake_elasticsearch_server.bulk_failures.extend([503, 503])
    settings.SEARCH_ENGINE = "elasticsearch"
    settings.ELASTICSEARCH_URL = fake_elasticsearch_server.url
    # when: a writer hands the rows over (outside a transaction: enqueued at once)
    with tenant_scope(TENANT_A):
        datarows_changed(project_id=project.pk, datarow_ids=ids)
    # then: two 503s, then the retry that indexes them
    documents = wait_until(
        lambda: fake_elasticsearch_server.documents(alias), timeout=90, what="the rows indexed", logs_of=(worker,)
    )
    assert sorted(int(i) for i in documents) == ids
    assert {d["metadata"]["weather"][0] for d in documents.values()} == {"rain", "sun", "fog"}
    assert len(fake_elasticsearch_server.requests_to("PUT", "/_bulk")) == 3
    assert worker.log().count("Retry in") >= 2


def test_a_worker_runs_the_reindex_job_to_the_alias_swap(worker, weather_rows, fake_elasticsearch_server, settings):
    from jobs.models import Job
    from search.services import search_reindex_start
    from tenancy.context import tenant_scope

    project, dataset, ids = weather_rows
    alias = alias_name(TENANT_A, project.pk)
    settings.SEARCH_ENGINE = "elasticsearch"
    editor = principal_make(tenant=TENANT_A)
    with tenant_scope(TENANT_A):
        job = search_reindex_start(principal=editor, project=project)

    def finished():
        with tenant_scope(TENANT_A):
            found = Job.objects.get(pk=job.pk)
        return found if found.status in (Job.Status.SUCCEEDED, Job.Status.FAILED) else None

    done = wait_until(finished, timeout=90, what="the reindex job to end", logs_of=(worker,))
    assert done.status == Job.Status.SUCCEEDED, done.error
    assert done.counters["indexed"] == 3 and fake_elasticsearch_server.resolve(alias) == [done.counters["index"]]
    assert sorted(int(i) for i in fake_elasticsearch_server.documents(alias)) == ids


def test_an_import_run_by_the_worker_is_handed_to_the_indexer(
    worker, weather_rows, fake_elasticsearch_server, settings, tmp_path
):
    from datasets.services.imports import ImportOptions, dataset_import_start
    from jobs.models import Job
    from tenancy.context import tenant_scope

    project, dataset, ids = weather_rows
    alias = alias_name(TENANT_A, project.pk)
    settings.LOCAL_READ_ROOT = tmp_path
    (tmp_path / TENANT_A).mkdir()
    manifest = write_manifest(tmp_path / TENANT_A / "rows.jsonl", manifest_rows(0, 5))
    editor = principal_make(tenant=TENANT_A)
    # when: an import job runs in the worker
    with tenant_scope(TENANT_A):
        job = dataset_import_start(
            principal=editor, dataset=dataset, uri=manifest, options=ImportOptions(create_classes=True)
        )
    # then: the rows it wrote are indexed (not the dataset's older, untouched rows: only what changed since it began)
    documents = wait_until(
        lambda: fake_elasticsearch_server.documents(alias),
        timeout=90,
        what="the imported rows indexed",
        logs_of=(worker,),
    )
    with tenant_scope(TENANT_A):
        assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
    assert sorted(d["external_id"] for d in documents.values()) == [f"img-{i}" for i in range(5)]
    assert all({label["class"] for label in d["labels"]} == {"cat", "dog"} for d in documents.values())
