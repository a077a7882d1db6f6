"""`python -m devstack serve` (`make run`) as a user runs it: a Celery worker killed with SIGKILL comes back while the
web stays up, and Ctrl-C stops every process it started, beat and pool children included, within seconds.

It serves a database of its own on the suite's PostgreSQL server and a Redis database of its own, both passed as
DATABASE_URL and REDIS_URL, so the devstack uses them as they are and starts no embedded service.
"""

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
import pytest
import redis

from tests.devstack.processes import alive, wait_until_gone
from tests.live_services import LiveProcess, free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# Redis databases are cheap and separate: this one is the suite's only user of it.
REDIS_DATABASE = 14


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


@pytest.fixture
def own_database():
    server = os.environ["DATABASE_URL"]
    name = f"serve_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_with_path(server, "/postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_path(server, f"/{name}")
    with psycopg.connect(_with_path(server, "/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_redis():
    url = _with_path(os.environ["REDIS_URL"], f"/{REDIS_DATABASE}")
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture
def serve(own_database, own_redis, tmp_path):
    port = free_port()
    env = {
        **{
            name: value for name, value in os.environ.items() if not name.startswith(("MLOPS_", "DATABASE_", "CELERY_"))
        },
        "MLOPS_ENV": "development",
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "MLOPS_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": own_database,
        "DATABASE_READER_URL": own_database,
        "REDIS_URL": own_redis,
        # Never the suite's own embedded services, were the configured ones missed.
        "DEVSTACK_PG_PORT": str(free_port()),
        "DEVSTACK_REDIS_PORT": str(free_port()),
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveProcess("devstack serve", process, log_path)
    server.env, server.url = env, f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        leftovers = (
            [server_process := psutil.Process(process.pid), *server_process.children(recursive=True)]
            if process.poll() is None
            else []
        )
        for leftover in leftovers:
            leftover.kill()
        process.wait(timeout=10)


def children_by_name(server: LiveProcess) -> dict[str, psutil.Process]:
    """The supervisor's children: the web server, the worker with beat, the training worker."""
    found = {}
    for child in psutil.Process(server.process.pid).children():
        command = child.cmdline()
        name = "web" if "uvicorn" in command else "training" if "training" in command else "worker"
        found[name] = child
    return found


def healthy(server: LiveProcess) -> bool:
    assert server.process.poll() is None, f"devstack serve exited:\n{server.log()[-4000:]}"
    try:
        return httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def workers_answering(server: LiveProcess) -> set[str]:
    """The Celery workers that answer `celery inspect ping`, by node name."""
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "mlops", "inspect", "ping", "--timeout", "3"],
        cwd=REPO_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return set(re.findall(r"^->\s+(\S+)@\S+: OK", result.stdout, re.M))


def test_a_killed_worker_is_restarted_while_the_web_stays_up_and_ctrl_c_stops_every_process(serve):
    # given: the platform serving, its worker ready with its pool and beat
    wait_until(
        lambda: healthy(serve), timeout=180, what="devstack serve to answer /healthz", interval=0.5, logs_of=(serve,)
    )
    wait_until(lambda: len(children_by_name(serve)) == 3, timeout=30, what="three children", logs_of=(serve,))
    web, worker = children_by_name(serve)["web"], children_by_name(serve)["worker"]
    # beat and two pool processes
    forked = wait_until(
        lambda: len(worker.children()) >= 3 and worker.children(),
        timeout=60,
        what="the worker's beat and pool",
        interval=0.2,
        logs_of=(serve,),
    )
    wait_until(
        lambda: {"celery", "training"} <= workers_answering(serve),
        timeout=60,
        what="both workers to answer",
        interval=0.5,
        logs_of=(serve,),
    )

    # when: the worker's main process dies as an OOM kill would
    worker.kill()

    # then: what it forked dies with it, and a new worker answers while the web kept serving
    assert wait_until_gone(forked, timeout=10) == [], "beat or pool processes outlived the killed worker"
    restarted = wait_until(
        lambda: next(
            (child for name, child in children_by_name(serve).items() if name == "worker" and child.pid != worker.pid),
            None,
        ),
        timeout=30,
        what="a new worker",
        interval=0.2,
        logs_of=(serve,),
    )
    wait_until(
        lambda: "celery" in workers_answering(serve),
        timeout=60,
        what="the new worker to answer",
        interval=0.5,
        logs_of=(serve,),
    )
    assert alive(restarted)
    assert children_by_name(serve)["web"].pid == web.pid
    assert healthy(serve)
    assert "worker exited with code -9" in serve.log()

    # when: Ctrl-C
    everything = [psutil.Process(serve.process.pid), *psutil.Process(serve.process.pid).children(recursive=True)]
    assert len(everything) >= 7, everything  # the supervisor, web, training worker, worker, its beat and pool
    serve.process.send_signal(signal.SIGINT)

    # then: every process is gone within a few seconds, and the supervisor said so
    assert wait_until_gone(everything, timeout=10) == []
    assert serve.process.wait(timeout=1) == 0
    assert "mlops stopped" in serve.log()
