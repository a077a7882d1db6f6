"""`python -m devstack run -- CMD` (`make test`) stops again the embedded PostgreSQL and Redis it started, and leaves
running those that were running before it (`python -m devstack up`, or a configured DATABASE_URL/REDIS_URL)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack.postgres import free_port, port_is_bindable, port_is_open
from tests.fresh_process import REPO_ROOT

# Run by `devstack run`: both services answer while the command runs.
CHECK_SERVICES = (
    "import os, psycopg, redis; psycopg.connect(os.environ['DATABASE_URL']).close(); "
    "assert redis.Redis.from_url(os.environ['REDIS_URL']).ping(); print('both answered')"
)


def _free_ports() -> tuple[int, int]:
    """A PostgreSQL port whose next one is free too (the embedded replica listens on the primary's port + 1), and a
    Redis port apart from both."""
    for _ in range(1_000):
        pg_port, redis_port = free_port(), free_port()
        if abs(pg_port - redis_port) > 1 and port_is_bindable(pg_port + 1):
            return pg_port, redis_port
    raise RuntimeError("no free pair of loopback ports")


@pytest.fixture
def embedded_env():
    # Straight under /tmp: when the tests run as root, PostgreSQL runs as a user pytest's root-owned folders shut out.
    data = Path(tempfile.mkdtemp(prefix="mlops-devstack-run-"))
    pg_port, redis_port = _free_ports()
    env = {
        **{
            name: value
            for name, value in os.environ.items()
            if name not in ("DATABASE_URL", "DATABASE_READER_URL", "REDIS_URL", "CELERY_BROKER_URL")
        },
        "MLOPS_DATA_DIR": str(data),
        "DEVSTACK_PG_PORT": str(pg_port),
        "DEVSTACK_REDIS_PORT": str(redis_port),
    }
    yield env
    devstack(env, "down")
    shutil.rmtree(data, ignore_errors=True)


def devstack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def ports(env: dict[str, str]) -> list[int]:
    pg_port = int(env["DEVSTACK_PG_PORT"])
    return [pg_port, pg_port + 1, int(env["DEVSTACK_REDIS_PORT"])]


def test_run_stops_the_embedded_services_it_started_and_leaves_those_it_found_running(embedded_env):
    # when: nothing runs yet
    result = devstack(embedded_env, "run", "--", sys.executable, "-c", CHECK_SERVICES)
    # then: the command had PostgreSQL (primary and replica) and Redis, and they stopped with it
    assert result.returncode == 0, result.stderr
    assert "both answered" in result.stdout
    assert [port for port in ports(embedded_env) if port_is_open(port)] == []

    # given: services started by `devstack up`, which leaves them running
    assert devstack(embedded_env, "up").returncode == 0
    # when
    result = devstack(embedded_env, "run", "--", sys.executable, "-c", CHECK_SERVICES)
    # then: they are still running after the command
    assert result.returncode == 0, result.stderr
    assert all(port_is_open(port) for port in ports(embedded_env))


def test_run_returns_the_commands_exit_status_and_still_stops_what_it_started(embedded_env):
    # given: the configured PostgreSQL of the suite, and no Redis yet
    env = {**embedded_env, "DATABASE_URL": os.environ["DATABASE_URL"]}
    # when
    result = devstack(env, "run", "--", sys.executable, "-c", "raise SystemExit(3)")
    # then
    assert result.returncode == 3
    assert not port_is_open(int(env["DEVSTACK_REDIS_PORT"]))
    assert port_is_open(urlsplit(os.environ["DATABASE_URL"]).port)
