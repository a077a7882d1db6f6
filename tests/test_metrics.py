"""Prometheus metrics: by route pattern, on their own port (never the API's), summed over gunicorn's workers and a
prefork Celery worker's processes (multiprocess mode)."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TENANT_A
from tests.live_services import (
    free_port,
    live_environment,
    purge_task_queues,
    start_asgi_server,
    start_celery_worker,
    wait_until,
)
from tests.test_observability import production_web_command

PROJECT_ROUTE = "api/v1/projects/<int:project_id>"


def scrape(port: int) -> dict[str, list]:
    """Every sample of the endpoint, by sample name."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list], name: str, **labels) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.django_db
def test_requests_are_counted_by_route_pattern_method_and_status_never_by_path(make_token, api_client):
    # given
    client = api_client(make_token(TENANT_A))
    labels = {"route": PROJECT_ROUTE, "method": "GET", "status": "404"}
    before = REGISTRY.get_sample_value("mlops_http_requests_total", labels) or 0
    # when: two projects that do not exist, by two paths of one pattern
    for project_id in (987654, 987655):
        assert client.get(f"/api/v1/projects/{project_id}").status_code == 404
    # then
    assert REGISTRY.get_sample_value("mlops_http_requests_total", labels) == before + 2
    assert (
        REGISTRY.get_sample_value(
            "mlops_http_request_duration_seconds_count", {"route": PROJECT_ROUTE, "method": "GET"}
        )
        >= 2
    )
    paths = {sample.labels.get("route") for family in REGISTRY.collect() for sample in family.samples}
    assert not any("987654" in (route or "") for route in paths)


@pytest.mark.django_db
def test_a_request_answered_before_routing_is_counted_under_its_pattern(api_client):
    labels = {"route": "api/v1/projects/", "method": "GET", "status": "401"}
    before = REGISTRY.get_sample_value("mlops_http_requests_total", labels) or 0

    assert api_client("not-a-jwt").get("/api/v1/projects/").status_code == 401

    assert REGISTRY.get_sample_value("mlops_http_requests_total", labels) == before + 1


@pytest.mark.django_db
def test_a_requests_database_time_is_measured(make_token, api_client):
    labels = {"route": "api/v1/projects/"}
    before = REGISTRY.get_sample_value("mlops_http_request_database_seconds_sum", labels) or 0

    assert api_client(make_token(TENANT_A)).get("/api/v1/projects/").status_code == 200

    assert REGISTRY.get_sample_value("mlops_http_request_database_seconds_sum", labels) > before


def test_metrics_are_not_served_on_the_api_port(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
@pytest.mark.usefixtures("committed_tenants")
def test_gunicorns_master_serves_the_sum_of_its_workers_on_its_own_port(auth0, platform, make_token, tmp_path):
    # given: the production web command, two workers, metrics on a port of their own
    metrics_port = free_port()
    env = live_environment(auth0, platform, WEB_CONCURRENCY=2, METRICS_PORT=metrics_port, XDG_RUNTIME_DIR=tmp_path)
    server = start_asgi_server(env, tmp_path, command=production_web_command)
    token = make_token(TENANT_A)
    requests = 40
    try:
        # when: N requests, concurrently, so both workers answer some
        def get(_):
            return httpx.get(
                f"{server.url}/api/v1/projects/", headers={"Authorization": f"Bearer {token}"}, timeout=30
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(get, range(requests))) == {200}
        samples = scrape(metrics_port)
        api_port_metrics = httpx.get(f"{server.url}/metrics", timeout=10)
    finally:
        server.stop()
    # then: the route's counter, summed over the scrape, is N: every worker's count is in the master's answer
    assert total(samples, "mlops_http_requests_total", route="api/v1/projects/", method="GET", status="200") == requests
    assert server.log().count("Booting worker") >= 2
    assert total(samples, "mlops_http_request_duration_seconds_count", route="api/v1/projects/") == requests
    assert "mlops_http_requests_in_flight" in samples
    assert api_port_metrics.status_code == 404


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
@pytest.mark.usefixtures("committed_tenants")
def test_a_prefork_worker_serves_its_jobs_and_queues(auth0, platform, make_token, api_client, tmp_path):
    # given: a prefork worker (the job runs in a child process) with its metrics on a port of its own
    metrics_port = free_port()
    purge_task_queues()
    worker = start_celery_worker(
        live_environment(auth0, platform, METRICS_WORKER_PORT=metrics_port),
        tmp_path,
        name=f"metrics-{uuid.uuid4().hex[:6]}",
        concurrency=2,
    )
    try:
        # when: a job runs to its end
        response = api_client(make_token(TENANT_A)).post(
            "/api/v1/jobs/", {"kind": "count", "steps": 2, "delay_seconds": 0}, format="json"
        )
        assert response.status_code == 201, response.content

        def finished():
            samples = scrape(metrics_port)
            return samples if total(samples, "mlops_jobs_finished_total", kind="count", status="succeeded") else None

        samples = wait_until(finished, timeout=60, what="the count job's series", interval=0.5, logs_of=(worker,))
    finally:
        worker.stop()
    # then: its start, end and duration, and the queues read from the broker and the job tables
    assert total(samples, "mlops_jobs_started_total", kind="count", tenant=TENANT_A) >= 1
    assert total(samples, "mlops_jobs_finished_total", kind="count", status="succeeded", tenant=TENANT_A) >= 1
    assert total(samples, "mlops_job_duration_seconds_count", kind="count", status="succeeded") >= 1
    assert {s.labels["queue"] for s in samples["mlops_queue_messages"]} >= {"celery", "training"}
    assert {s.labels["queue"] for s in samples["mlops_jobs_queued"]} >= {"celery", "training"}
    assert {s.labels["queue"] for s in samples["mlops_job_oldest_queued_age_seconds"]} >= {"celery", "training"}
