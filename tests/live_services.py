"""The real things, as subprocesses on the pytest test database: Celery workers and an ASGI server.

Use them from tests marked `transactional_db` (the subprocesses see only committed data) together with
`committed_tenants`. They share REDIS_URL with the test process (broker, channel layer, cache) and reach
the fake Auth0 and platform servers of tests/conftest.py over loopback. Every subprocess runs in its own
process group, logs to a file (shown when a wait times out), and is killed when its fixture ends.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from devstack.postgres import free_port
from tests.conftest import TENANT_A, TENANT_B

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LiveProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole group (a prefork worker's pool children too), as a lost host or an OOM kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, grace_seconds: float = 5) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class LiveServer(LiveProcess):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    logs_of: tuple[LiveProcess, ...] = (),
):
    """Poll until `condition()` is truthy and return it; on timeout fail with the subprocesses' logs."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} log (last 4000 chars):\n{p.log()[-4000:]}" for p in logs_of)
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(interval)


def _database_url(settings_dict: dict, host: str | None = None, port: str | None = None) -> str:
    user = quote(settings_dict["USER"] or "", safe="")
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{host or settings_dict['HOST']}:{port or settings_dict['PORT']}"
        f"/{settings_dict['NAME']}"
    )


def live_environment(auth0, platform, **overrides: object) -> dict[str, str]:
    """The environment of a subprocess that serves the pytest test database like the test process does."""
    from django.conf import settings
    from django.db import connections

    writer = connections["default"].settings_dict
    # Reads go to the streaming replica's copy of the test database when one is configured.
    reader_url = os.environ.get("DATABASE_READER_URL")
    if reader_url:
        reader = urlsplit(reader_url)
        reader_url = urlunsplit(reader._replace(path=f"/{writer['NAME']}"))
    env = {
        **os.environ,
        "MLOPS_ENV": "test",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": _database_url(writer),
        "DATABASE_READER_URL": reader_url or _database_url(writer),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "JWT_ISSUER": auth0.issuer,
        "JWT_AUDIENCE": auth0.audience,
        "JWT_JWKS_URL": auth0.jwks_url,
        "PLATFORM_URL": platform.url,
        "PLATFORM_SERVICE_KEY": settings.PLATFORM_SERVICE_KEY,
        "MLOPS_DEV_AUTH": "0",
    }
    return {**env, **{name: str(value) for name, value in overrides.items()}}


def _spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> tuple[subprocess.Popen, Path]:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process, log_path


def start_celery_worker(
    env: dict[str, str],
    log_dir: Path,
    *,
    name: str,
    beat: bool = False,
    concurrency: int = 1,
    queues: tuple[str, ...] = (),
    pool: str = "prefork",
    ready_timeout: float = 60,
) -> LiveProcess:
    """A worker (prefork unless told; with embedded beat if asked), ready to consume when returned; `queues`
    replaces the default queue (e.g. ("training",) for a training worker, which runs the solo pool)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "mlops",
        "worker",
        "-l",
        "info",
        "--concurrency",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if queues:
        command += ["-Q", ",".join(queues)]
    if pool != "prefork":
        command += ["-P", pool]
    if beat:
        command += ["-B", "-s", str(log_dir / f"{name}-beat-schedule")]
    process, log_path = _spawn(name, command, env, log_dir)
    worker = LiveProcess(name, process, log_path)
    try:
        wait_until(
            lambda: process.poll() is not None or " ready." in worker.log(),
            timeout=ready_timeout,
            what=f"Celery worker {name} to be ready",
            interval=0.1,
            logs_of=(worker,),
        )
        if process.poll() is not None:
            pytest.fail(f"Celery worker {name} exited with {process.returncode}:\n{worker.log()[-4000:]}")
    except BaseException:
        worker.stop()
        raise
    return worker


def start_asgi_server(
    env: dict[str, str], log_dir: Path, *, command: Callable[[int], list[str]] | None = None, ready_timeout: float = 60
) -> LiveServer:
    """uvicorn logging warnings only, or the server `command(port)` starts (as `make run` or production does)."""
    port = free_port()
    command = (
        command(port)
        if command
        else [
            sys.executable,
            "-m",
            "uvicorn",
            "mlops.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    process, log_path = _spawn("asgi", command, env, log_dir)
    server = LiveServer("asgi", process, log_path, port=port)

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the ASGI server exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            return httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(
            healthy, timeout=ready_timeout, what="the ASGI server to answer /healthz", interval=0.1, logs_of=(server,)
        )
    except BaseException:
        server.stop()
        raise
    return server


def purge_task_queues() -> None:
    """Drop messages an earlier, interrupted run left in the broker, so a new worker starts on this run's work."""
    from mlops.celery import app

    app.control.purge()


@pytest.fixture
def committed_tenants(transactional_db):
    """A transactional test flushes the public schema when it ends, tenants included: provision them again.

    Their schemas (and the jobs in them) survive the flush, so this re-creates the rows, and ends the jobs earlier
    tests left queued or running: they would count against the tenant's running jobs (JOB_MAX_RUNNING_PER_TENANT).
    """
    from django.utils import timezone

    from jobs.models import Job
    from tenancy.context import tenant_scope
    from tenancy.services import tenant_provision

    for schema, name in ((TENANT_A, "Acme"), (TENANT_B, "Globex")):
        tenant_provision(schema_name=schema, name=name, if_missing=True)
        with tenant_scope(schema):
            Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
                status=Job.Status.CANCELLED, finished_at=timezone.now()
            )


@pytest.fixture(scope="module")
def live_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def live_worker(django_db_setup, auth0, platform, live_log_dir):
    """One worker for the module, with the settings' defaults (no beat)."""
    purge_task_queues()
    worker = start_celery_worker(live_environment(auth0, platform), live_log_dir, name="worker")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def live_asgi_server(django_db_setup, auth0, platform, live_log_dir):
    server = start_asgi_server(live_environment(auth0, platform), live_log_dir)
    yield server
    server.stop()
