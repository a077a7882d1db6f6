"""deploy/: Prometheus' configuration and alert rules (promtool), a real Prometheus scraping live processes for every
dashboard panel's query, and the Grafana dashboard and Fluent Bit files checked by structure (neither runs here).

promtool and prometheus are the Debian package `prometheus` (`.ci/run` installs it); without them these tests are
skipped with the reason, except under CI=true, where their absence is a failure.
"""

import json
import os
import re
import shutil
import subprocess
import time
import uuid

import httpx
import pytest
import yaml

from demo.digits import write_digits
from demo.loop import LoopSettings, Platform, run_loop
from tests.conftest import TENANT_A
from tests.fresh_process import REPO_ROOT
from tests.live_services import (
    free_port,
    live_environment,
    purge_task_queues,
    start_asgi_server,
    start_celery_worker,
    wait_until,
)
from tests.test_observability import production_web_command

DEPLOY = REPO_ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mlops.json"
PROMQL_FUNCTIONS_AND_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "le",
    "or",
    "and",
    "unless",
    "on",
    "ignoring",
    "vector",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing under CI: .ci/run installs the Debian package prometheus")
        pytest.skip(f"{name} is not installed (apt-get install prometheus); CI installs it")
    return path


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions, keywords or labels."""
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", without_labels)
    return {
        word
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_groupings)
        if word not in PROMQL_FUNCTIONS_AND_WORDS
    }


def defined_series() -> set[str]:
    """The series mlops/metrics.py and mlops/metrics_server.py expose (counters with _total, histograms' parts)."""
    from mlops import metrics

    names = set()
    for value in vars(metrics).values():
        if hasattr(value, "_type") and hasattr(value, "_name"):
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(value._type, [""])
            names |= {value._name + suffix for suffix in suffixes}
    source = (REPO_ROOT / "mlops" / "metrics_server.py").read_text()
    return names | set(re.findall(r'GaugeMetricFamily\(\s*"(\w+)"', source))


def test_prometheus_configuration_and_alert_rules_pass_promtool():
    promtool = require_tool("promtool")
    config = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=DEPLOY / "prometheus", capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus", capture_output=True, text=True
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_every_alert_rule_has_a_promtool_case():
    rules = {
        rule["alert"]
        for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    # Counted by increase() over a window, each fires on its first event like MlopsReaderDown's case shows.
    assert rules - tested <= {"MlopsSlowRequests", "MlopsStatementTimeouts", "MlopsLostWorkers"}


def test_every_dashboard_panel_queries_series_our_code_exposes():
    dashboard = json.loads(DASHBOARD.read_text())
    defined = defined_series()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            names = metric_names(target["expr"])
            assert names and names <= defined, (panel["title"], names - defined)
    provisioned = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert provisioned["datasources"][0]["uid"] == "prometheus"


def fluent_bit_sections(path) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic format: [SECTION] headers, indented `Key Value` lines, # comments."""
    sections: list[tuple[str, dict[str, str]]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if header := re.fullmatch(r"\[([A-Z]+)\]", stripped):
            sections.append((header.group(1), {}))
            continue
        key_value = re.fullmatch(r"\s+([\w.]+)\s+(\S.*)", line)
        assert key_value and sections, f"{path.name}:{number}: not a section header nor an indented key and value"
        sections[-1][1][key_value.group(1).lower()] = key_value.group(2)
    return sections


def test_fluent_bit_parses_our_json_lines_from_every_container():
    config = fluent_bit_sections(DEPLOY / "fluent-bit" / "fluent-bit.conf")
    parsers = {
        values["name"]: values
        for kind, values in fluent_bit_sections(DEPLOY / "fluent-bit" / "parsers.conf")
        if kind == "PARSER"
    }
    kinds = [kind for kind, _ in config]
    assert kinds.count("SERVICE") == 1 and "INPUT" in kinds and "OUTPUT" in kinds
    named = [values["parser"] for _, values in config if "parser" in values]
    assert named and set(named) <= parsers.keys()
    [tail] = [values for kind, values in config if kind == "INPUT"]
    assert tail["name"] == "tail" and tail["path"] == "/var/lib/docker/containers/*/*.log"
    # our lines' time, as settings.LOGGING writes it, in the parser's format
    import logging

    from mlops.observability import json_log_formatter

    line = json.loads(json_log_formatter().format(logging.LogRecord("x", logging.INFO, "p", 1, "m", None, None)))
    time.strptime(line["time"].split(",")[0], parsers["mlops_json"]["time_format"].split(",")[0])


def prometheus_config(tmp_path, web_port: int, worker_ports: list[int]):
    """deploy/prometheus/prometheus.yml, scraping the live processes on loopback every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    targets = {"mlops-web": [f"127.0.0.1:{web_port}"], "mlops-worker": [f"127.0.0.1:{port}" for port in worker_ports]}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
@pytest.mark.usefixtures("committed_tenants")
def test_a_real_prometheus_finds_a_series_for_every_dashboard_panel(auth0, platform, make_token, tmp_path):
    prometheus = require_tool("prometheus")
    # given: the web as production runs it, a worker and a training worker, each serving metrics on a port of its own
    web_port, worker_port, training_port, prometheus_port = free_port(), free_port(), free_port(), free_port()
    digits = write_digits(tmp_path / "imports" / TENANT_A / "digits", limit=80, seed_per_class=2, holdout_fraction=0.25)
    env = live_environment(
        auth0,
        platform,
        MLOPS_LOCAL_READ_ROOT=tmp_path / "imports",
        MLOPS_STORAGE_ROOT=tmp_path / "storage",
        WEB_CONCURRENCY=2,
        METRICS_PORT=web_port,
        METRICS_WORKER_PORT=worker_port,
        XDG_RUNTIME_DIR=tmp_path,
    )
    purge_task_queues()
    processes = []
    try:
        processes.append(start_celery_worker(env, tmp_path, name="worker"))
        processes.append(
            start_celery_worker(
                {**env, "METRICS_WORKER_PORT": str(training_port)},
                tmp_path,
                name="training",
                queues=("training",),
                pool="solo",
            )
        )
        web = start_asgi_server(env, tmp_path, command=production_web_command)
        processes.append(web)
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={prometheus_config(tmp_path, web_port, [worker_port, training_port])}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=(tmp_path / "prometheus.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # when: the loop over REST (import, search, slice, train, predict) and an error
            token = make_token(TENANT_A)
            run_loop(
                Platform(web.url, token, say=lambda line: None),
                digits,
                LoopSettings(rounds=0, batch=8, epochs=1, image_size=16),
                project_name=f"m {uuid.uuid4().hex[:8]}",
            )
            assert (
                httpx.get(
                    f"{web.url}/api/v1/projects/987654", headers={"Authorization": f"Bearer {token}"}, timeout=10
                ).status_code
                == 404
            )
            api = f"http://127.0.0.1:{prometheus_port}/api/v1"

            def missing() -> list:
                found = []
                for title, expr in dashboard_queries():
                    try:
                        result = httpx.get(f"{api}/query", params={"query": expr}, timeout=5).json()
                    except httpx.TransportError:
                        return [("prometheus", "not up yet")]
                    if not result["data"]["result"]:
                        found.append((title, expr))
                return found

            # then: after a few scrapes, every panel's query has a series
            wait_until(
                lambda: not missing(),
                timeout=60,
                what="a series for every dashboard panel",
                interval=1,
                logs_of=tuple(processes),
            )
            targets = httpx.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
            assert {target["health"] for target in targets} == {"up"}, targets
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        for process in processes:
            process.stop()
