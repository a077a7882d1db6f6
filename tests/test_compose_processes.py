"""docker-compose.yml proven by its processes: every app service run as Compose would run it, then used and scraped.

Each service built from this repository (migrate, web, worker, training-worker, beat: whatever the file defines)
runs from this checkout with the argv, environment and start order Compose gives it, read from the file: `command` /
`entrypoint`, else the Dockerfile's CMD / ENTRYPOINT; the image's ENV under the service's `environment`, interpolated
from a deployer's shell that asks for production (tests/compose_file.py); `depends_on` conditions waited for, an app
service's `healthcheck.test` run as Compose runs it (CMD: exec, CMD-SHELL: `sh -c`). Then the platform provisions
a tenant and a user drives a short loop over the web's port (project, dataset, an import of a tiny JSONL manifest
from the tenant's folder run by the worker, a search, a training run on the training worker), every process's
/metrics is scraped, and `docker compose stop` is played: SIGTERM to each main process, which must end by itself.

Substitutions, the only differences from `docker compose up` (everything else is the file's, verbatim):
- Infrastructure: writer, reader and redis are the devstack's primary, streaming replica and Redis, checked like
  their healthchecks check them (the writer takes connections, the reader is in recovery, Redis answers); their
  images' entrypoints (database init, the replication role, pg_basebackup) are not run. Services behind a profile
  that is off (elasticsearch) and the monitoring ones (prometheus, grafana, fluent-bit: tests/test_metrics_stack.py
  runs Prometheus' file against live processes) are not started.
- Host names: `writer:5432`, `reader:5432` and `redis:6379` in the environment become the devstack's loopback
  ports; the database name becomes a fresh database on the primary (dropped at the end), as a first `up` starts
  from empty volumes.
- Ports: a container's own address (0.0.0.0, and 127.0.0.1 in the healthcheck) and port (8000) become 127.0.0.1
  and a free port; each process's metrics port, the settings' default inside its own container (9100 web, 9101
  each worker, as deploy/prometheus/prometheus.yml scrapes them), is a free port set as METRICS_PORT /
  METRICS_WORKER_PORT, and METRICS_ADDRESS 0.0.0.0 becomes 127.0.0.1.
- Volumes: each mount's container path (/var/lib/mlops, in paths of the environment and the command too) is a
  folder under the test's tmp_path; the image's WORKDIR /app is this checkout; HOME is a tmp folder.
- Executables: the image's python is this virtualenv's (its bin/ first on PATH: python, gunicorn, celery).
- Outside services: the deployer's JWT_JWKS_URL and PLATFORM_URL are the fake Auth0's and platform's loopback URLs
  (tests/external_services.py); their other values (issuer, keys, allowed hosts) are the deployer's own choices.
- Healthchecks are polled every 0.2 s rather than every `interval`, within the time Compose would allow them.
- The client plays the load balancer: it names the allowed Host and sends X-Forwarded-Proto: https.
"""

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
import pytest
import redis
import yaml

from demo.digits import write_digits
from tests.compose_file import container_environment, dockerfile_environment, dockerfile_instructions, load_compose
from tests.factories import token_make
from tests.fresh_process import REPO_ROOT
from tests.live_services import LiveProcess, free_port, purge_task_queues, wait_until
from tests.test_metrics import scrape, total

# The devstack (or CI's services) behind the compose infrastructure, from `devstack run`'s environment.
INFRASTRUCTURE_URLS = {"writer": "DATABASE_URL", "reader": "DATABASE_READER_URL", "redis": "REDIS_URL"}
IMAGE_WORKDIR = "/app"
ALLOWED_HOST = "mlops.example.test"
# Not the suite's acme/globex: Redis (cache, rate limits) is shared with the tests of the pytest database.
TENANT = "composed"
# The settings' metrics ports, as each container has them (deploy/prometheus/prometheus.yml scrapes them there).
SETTINGS_METRICS_PORTS = {"METRICS_PORT": 9100, "METRICS_WORKER_PORT": 9101}
# `docker compose stop` waits stop_grace_period (10 s unless the service says) before it kills; capped for the test.
STOP_GRACE_CAP_SECONDS = 20


def seconds(duration: str | None, default: float) -> float:
    """Compose's durations: "1m30s", "5s", "500ms"."""
    if duration is None:
        return default
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def image_argv(service: dict) -> list[str]:
    """Docker's rule: the service's entrypoint (else the image's) followed by its command (else the image's CMD,
    which a service's own entrypoint drops)."""
    instructions = dict(dockerfile_instructions())
    image_entrypoint = json.loads(instructions["ENTRYPOINT"]) if "ENTRYPOINT" in instructions else []
    image_cmd = json.loads(instructions["CMD"]) if "CMD" in instructions else []

    def words(value) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else list(value)

    entrypoint = words(service["entrypoint"]) if "entrypoint" in service else image_entrypoint
    if "command" in service:
        command = words(service["command"])
    else:
        command = [] if "entrypoint" in service else image_cmd
    return entrypoint + command


def metrics_port_variable(argv: list[str]) -> str | None:
    """The variable a process serves its metrics on: gunicorn's master METRICS_PORT, a Celery worker the other."""
    if argv[0] == "gunicorn":
        return "METRICS_PORT"
    if argv[0] == "celery" and "worker" in argv:
        return "METRICS_WORKER_PORT"
    return None


@dataclass
class Substitutions:
    """The loopback stand-ins of the containers' names, ports and paths (the docstring lists them)."""

    hosts: dict[str, tuple[str, int]]
    database: str
    volumes_root: Path
    venv_bin: Path
    home: Path
    ports: dict[str, dict[int, int]] = field(default_factory=dict)

    def url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "redis") or parts.hostname not in self.hosts:
            return value
        host, port = self.hosts[parts.hostname]
        credentials = parts.netloc.rpartition("@")[0]
        path = f"/{self.database}" if parts.scheme == "postgres" else parts.path
        return urlunsplit(
            parts._replace(netloc=f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}", path=path)
        )

    def mounts(self, service: dict) -> dict[str, Path]:
        """Container path -> host folder, for the service's volumes (named ones under volumes_root)."""
        mounts = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts[target] = (REPO_ROOT / source) if source.startswith((".", "/")) else self.volumes_root / source
            mounts[target].mkdir(parents=True, exist_ok=True)
        return mounts

    def text(self, name: str, service: dict, value: str) -> str:
        """A word of a command, healthcheck or environment value, with the container's addresses and paths moved."""
        for container_port, host_port in self.ports.get(name, {}).items():
            value = re.sub(
                rf"\b(?:0\.0\.0\.0|127\.0\.0\.1|localhost):{container_port}\b", f"127.0.0.1:{host_port}", value
            )
        for target, source in self.mounts(service).items():
            value = re.sub(rf"(?<![\w/]){re.escape(target)}(?=/|$)", str(source), value)
        return value

    def environment(self, name: str, service: dict, shell_env: dict[str, str]) -> dict[str, str]:
        env = {**dockerfile_environment(), **container_environment(service, shell_env)}
        env = {key: self.text(name, service, self.url(value)) for key, value in env.items()}
        if env.get("METRICS_ADDRESS") == "0.0.0.0":
            env["METRICS_ADDRESS"] = "127.0.0.1"
        # What the image's base gives every process: its python first on PATH, the user's home.
        env["PATH"] = f"{self.venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["HOME"] = str(self.home)
        return env


@dataclass
class ComposeProcess(LiveProcess):
    service: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    metrics_port: int | None = None


class ComposeRun:
    """`docker compose up` of the app services over the substituted infrastructure, and `docker compose stop`."""

    def __init__(self, compose: dict, shell_env: dict[str, str], substitutions: Substitutions, log_dir: Path):
        self.services = {name: service for name, service in compose["services"].items() if not service.get("profiles")}
        self.app = [name for name, service in self.services.items() if "build" in service]
        self.shell_env = shell_env
        self.substitutions = substitutions
        self.log_dir = log_dir
        self.processes: dict[str, ComposeProcess] = {}

    def start(self, name: str) -> ComposeProcess:
        service = self.services[name]
        self.substitutions.ports[name] = {
            int(mapping.split(":")[-1]): free_port() for mapping in service.get("ports", [])
        }
        env = self.substitutions.environment(name, service, self.shell_env)
        argv = [self.substitutions.text(name, service, word) for word in image_argv(service)]
        metrics_port = None
        if variable := metrics_port_variable(argv):
            metrics_port = free_port()
            env[variable] = str(metrics_port)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = ComposeProcess(
            name, process, log_path, service=service, env=env, metrics_port=metrics_port
        )
        return self.processes[name]

    def healthy(self, name: str) -> bool:
        """The service's healthcheck, run as Compose runs it: CMD execs, CMD-SHELL goes through `sh -c`."""
        if name not in self.app:
            return infrastructure_healthy(name)
        process = self.processes.get(name)
        if process is None or process.process.poll() is not None:
            return False
        service = self.services[name]
        test = service["healthcheck"]["test"]
        test = ["CMD-SHELL", test] if isinstance(test, str) else test
        argv = [self.substitutions.text(name, service, word) for word in test[1:]]
        argv = ["sh", "-c", argv[0]] if test[0] == "CMD-SHELL" else argv
        timeout = seconds(service["healthcheck"].get("timeout"), 30)
        try:
            return (
                subprocess.run(argv, cwd=REPO_ROOT, env=process.env, capture_output=True, timeout=timeout).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            return False

    def healthcheck_window(self, name: str) -> float:
        """How long Compose lets a service become healthy: its start period, then `retries` failed intervals."""
        check = self.services[name].get("healthcheck", {})
        return seconds(check.get("start_period"), 0) + seconds(check.get("interval"), 30) * check.get("retries", 3)

    def condition_met(self, dependency: str, condition: str) -> bool:
        if condition == "service_started":
            return dependency in self.processes or dependency not in self.app
        if condition == "service_healthy":
            return self.healthy(dependency)
        assert condition == "service_completed_successfully", condition
        process = self.processes.get(dependency)
        if process is None:
            return False
        code = process.process.poll()
        if code not in (None, 0):
            pytest.fail(
                f"{dependency} exited with {code}, so Compose starts nothing that waits for it:\n"
                f"{process.log()[-4000:]}"
            )
        return code == 0

    def up(self, timeout: float) -> None:
        """Start each app service once every dependency of it is met, the way Compose orders `up`."""
        deadline = time.monotonic() + timeout
        waiting = list(self.app)
        while waiting:
            for name in list(waiting):
                depends_on = self.services[name].get("depends_on", {})
                if all(
                    self.condition_met(dependency, rule["condition"])
                    for dependency, rule in depends_on.items()
                    if dependency in self.services or rule.get("required", True)
                ):
                    self.start(name)
                    waiting.remove(name)
            self.assert_running(exclude={name for name in self.processes if self.restart_policy(name) == "no"})
            if time.monotonic() > deadline:
                pytest.fail(f"compose up: {waiting} still waiting after {timeout}s\n{self.logs()}")
            time.sleep(0.2)

    def restart_policy(self, name: str) -> str:
        return str(self.services[name].get("restart", "no"))

    def assert_running(self, exclude: set[str] = frozenset()) -> None:
        """A long-running service that exits would be restarted by Compose: here that is a failure."""
        for name, process in self.processes.items():
            if name not in exclude and process.process.poll() is not None:
                pytest.fail(f"{name} exited with {process.process.returncode}:\n{process.log()[-4000:]}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (last 3000 chars):\n{process.log()[-3000:]}" for name, process in self.processes.items()
        )

    def stop(self) -> tuple[dict[str, int | None], dict[str, list[str]]]:
        """`docker compose stop`: SIGTERM to each container's main process, SIGKILL to what is left after its grace
        period. Returns each exit code (None where the grace period ran out) and what outlived a main process."""
        running = {name: process for name, process in self.processes.items() if process.process.poll() is None}
        for process in running.values():
            os.kill(process.process.pid, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        leftovers: dict[str, list[str]] = {}
        for name, process in running.items():
            grace = min(seconds(process.service.get("stop_grace_period"), 10), STOP_GRACE_CAP_SECONDS)
            try:
                codes[name] = process.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                codes[name] = None
                process.kill()
            # The container's end takes everything in it: here, what is still alive in the process's session.
            _gone, alive = psutil.wait_procs(session_members(process.process.pid), timeout=2)
            if alive:
                leftovers[name] = [" ".join(member.cmdline()) for member in alive]
                for member in alive:
                    member.kill()
                psutil.wait_procs(alive, timeout=10)
        return codes, leftovers


def session_members(session_id: int) -> list[psutil.Process]:
    members = []
    for candidate in psutil.process_iter():
        try:
            if os.getsid(candidate.pid) == session_id:
                members.append(candidate)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


def infrastructure_healthy(name: str) -> bool:
    """What the devstack's stand-ins' healthchecks check: connections taken; the reader in recovery; Redis pings."""
    url = os.environ[INFRASTRUCTURE_URLS[name]]
    try:
        if name == "redis":
            return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
        with psycopg.connect(url, connect_timeout=2) as connection:
            in_recovery = connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        return in_recovery == (name == "reader")
    except (psycopg.Error, redis.RedisError):
        return False


@pytest.fixture
def fresh_database():
    """A new database on the primary (the replica follows it), as a first `up` creates one on empty volumes."""
    name = f"mlops_compose_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def wait_for_job(client: httpx.Client, job_id: str, *, timeout: float, run: ComposeRun) -> dict:
    def ended():
        run.assert_running(exclude={"migrate"})
        job = client.get(f"/api/v1/jobs/{job_id}").raise_for_status().json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_until(
        ended, timeout=timeout, what=f"job {job_id} to end", interval=0.3, logs_of=tuple(run.processes.values())
    )
    assert job["status"] == "succeeded", job
    return job


def test_compose_app_services_run_serve_the_loop_export_metrics_and_stop_cleanly(
    auth0, platform, tmp_path, fresh_database
):
    # given: a deployer's shell for production, and compose's file read as Compose reads it
    shell_env = {
        "MLOPS_ENV": "production",
        "MLOPS_DEV_AUTH": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "DJANGO_ALLOWED_HOSTS": ALLOWED_HOST,
        "PLATFORM_SERVICE_KEY": secrets.token_urlsafe(32),
        "JWT_ISSUER": auth0.issuer,
        "JWT_AUDIENCE": auth0.audience,
        "JWT_JWKS_URL": auth0.jwks_url,
        "PLATFORM_URL": platform.url,
        "MLOPS_LOCAL_READ_ROOT": "/var/lib/mlops/imports",
    }
    compose = load_compose(shell_env)
    substitutions = Substitutions(
        hosts={name: loopback(os.environ[variable]) for name, variable in INFRASTRUCTURE_URLS.items()},
        database=fresh_database,
        volumes_root=tmp_path / "volumes",
        venv_bin=Path(sys.executable).parent,
        home=tmp_path / "home",
    )
    (tmp_path / "home").mkdir()
    run = ComposeRun(compose, shell_env, substitutions, tmp_path)
    assert {"migrate", "web", "worker", "training-worker", "beat"} <= set(run.app)
    # Messages an interrupted run left in the broker would reach these workers first.
    purge_task_queues()
    try:
        # when: up, and the web healthy by its own healthcheck (what a load balancer waits for)
        run.up(timeout=90)
        wait_until(
            lambda: run.assert_running(exclude={"migrate"}) or run.healthy("web"),
            timeout=run.healthcheck_window("web"),
            what="web's healthcheck",
            interval=0.2,
            logs_of=tuple(run.processes.values()),
        )
        web = f"http://127.0.0.1:{substitutions.ports['web'][8000]}"
        balancer = {"Host": ALLOWED_HOST, "X-Forwarded-Proto": "https"}
        # the platform provisions the tenant, which makes its folder under MLOPS_LOCAL_READ_ROOT on the app volume
        provisioned = httpx.post(
            f"{web}/api/v1/platform/tenants",
            json={"schema_name": TENANT, "name": "Acme"},
            headers={**balancer, "Authorization": f"Bearer {shell_env['PLATFORM_SERVICE_KEY']}"},
            timeout=120,
        )
        assert provisioned.status_code == 201, provisioned.text
        tenant_folder = substitutions.volumes_root / "app-data" / "imports" / TENANT
        assert tenant_folder.is_dir()
        digits = write_digits(tenant_folder / "digits", limit=24, seed_per_class=2, holdout_fraction=0.2)
        token = token_make(auth0, platform, tenant=TENANT, role="editor")
        client = httpx.Client(base_url=web, headers={**balancer, "Authorization": f"Bearer {token}"}, timeout=30)

        # and a user's loop over the web's port
        project = client.post("/api/v1/projects/", json={"name": "compose"}).raise_for_status().json()
        p = project["id"]
        dataset = client.post(f"/api/v1/projects/{p}/datasets/", json={"name": "digits"}).raise_for_status().json()
        job = client.post(
            f"/api/v1/projects/{p}/datasets/{dataset['id']}/imports",
            json={"uri": str(digits.manifest), "format": "jsonl", "create_classes": True},
        )
        assert job.status_code == 202, job.text
        imported = wait_for_job(client, job.json()["id"], timeout=60, run=run)
        found = wait_until(
            lambda: (
                (
                    body := client.post(f"/api/v1/projects/{p}/search", json={"query": "tags = 'seed'"})
                    .raise_for_status()
                    .json()
                )["total"]["value"]
                == digits.seed_rows
                and body
            ),
            timeout=20,
            what="the search to see the import",
            logs_of=tuple(run.processes.values()),
        )
        train_slice = (
            client.post(
                f"/api/v1/projects/{p}/slices/", json={"name": "seed", "kind": "frozen", "query": "tags = 'seed'"}
            )
            .raise_for_status()
            .json()
        )
        wait_until(
            lambda: client.get(f"/api/v1/projects/{p}/slices/{train_slice['id']}").json()["status"] == "ready",
            timeout=20,
            what="the slice to be ready",
            logs_of=tuple(run.processes.values()),
        )
        client.post(
            f"/api/v1/projects/{p}/slices/{train_slice['id']}/split",
            json={"seed": 1, "fractions": {"train": 0.8, "validation": 0.2}},
        ).raise_for_status()
        model = (
            client.post(
                f"/api/v1/projects/{p}/models",
                json={
                    "name": "digits",
                    "trainer": "image-classifier",
                    "hyperparameters": {
                        "architecture": "small-cnn",
                        "image_size": 16,
                        "epochs": 1,
                        "batch_size": 8,
                        "seed": 1,
                    },
                },
            )
            .raise_for_status()
            .json()
        )
        training = client.post(f"/api/v1/projects/{p}/models/{model['id']}/runs", json={"slice_id": train_slice["id"]})
        assert training.status_code == 202, training.text
        trained = wait_for_job(client, training.json()["job"]["id"], timeout=60, run=run)
        # and reads on connections of their own, at once, so that every gunicorn worker answers some
        reads = 24
        with ThreadPoolExecutor(8) as pool:
            statuses = set(
                pool.map(
                    lambda _: httpx.get(f"{web}/api/v1/projects/{p}", headers=client.headers, timeout=30).status_code,
                    range(reads),
                )
            )
        assert statuses == {200}

        # then: the loop went through: the import on the worker, the training on the training worker
        assert found["total"]["value"] == digits.seed_rows
        # and every process that serves metrics serves them on its port, with the series of its part
        web_samples = scrape(run.processes["web"].metrics_port)
        # gunicorn's master answers for all its workers
        assert run.processes["web"].log().count("Booting worker") == int(run.processes["web"].env["WEB_CONCURRENCY"])
        assert (
            total(
                web_samples,
                "mlops_http_requests_total",
                route="api/v1/projects/<int:project_id>",
                method="GET",
                status="200",
            )
            == reads
        )
        assert (
            total(web_samples, "mlops_http_requests_total", route="api/v1/projects/", method="POST", status="201") == 1
        )
        assert (
            total(
                web_samples,
                "mlops_http_requests_total",
                route="api/v1/projects/<int:project_id>/datasets/<int:dataset_id>/imports",
                method="POST",
                status="202",
            )
            == 1
        )
        assert (
            total(
                web_samples,
                "mlops_http_requests_total",
                route="api/v1/projects/<int:project_id>/search",
                method="POST",
                status="200",
            )
            >= 1
        )
        assert total(web_samples, "mlops_search_duration_seconds_count") >= 1
        for name, kind in (("worker", imported["kind"]), ("training-worker", trained["kind"])):
            samples = scrape(run.processes[name].metrics_port)
            assert total(samples, "mlops_jobs_started_total", kind=kind) == 1, name
            assert total(samples, "mlops_jobs_finished_total", kind=kind, status="succeeded") == 1, name
            queues = {sample.labels["queue"] for sample in samples.get("mlops_queue_messages", [])}
            assert {"celery", "training"} <= queues, (name, queues)
            assert {sample.labels["queue"] for sample in samples.get("mlops_jobs_queued", [])} >= {"training"}
        assert total(scrape(run.processes["worker"].metrics_port), "mlops_import_rows_total") == digits.rows
        # and Prometheus' file scrapes exactly the processes that serve metrics, on their settings' default ports
        prometheus = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        targets = {
            target
            for job in prometheus["scrape_configs"]
            for config in job["static_configs"]
            for target in config["targets"]
        }
        served = {
            f"{name}:{SETTINGS_METRICS_PORTS[variable]}"
            for name in run.app
            if (variable := metrics_port_variable(image_argv(run.services[name])))
        }
        assert targets == served
        assert {name for name, process in run.processes.items() if process.metrics_port} == {
            target.split(":")[0] for target in served
        }
        # and beat keeps its schedule where the file says, on the app volume
        assert list((substitutions.volumes_root / "app-data").glob("celerybeat-schedule*"))
        run.assert_running(exclude={"migrate"})
    finally:
        # when: docker compose stop
        codes, leftovers = run.stop()
    # then: each process ended by itself within its grace period, and nothing of any of them outlived it
    assert codes == dict.fromkeys(run.processes.keys() - {"migrate"}, 0), f"{codes}\n{run.logs()}"
    assert leftovers == {}
    assert run.processes["migrate"].process.returncode == 0
    for process in run.processes.values():
        assert session_members(process.process.pid) == [], process.name
