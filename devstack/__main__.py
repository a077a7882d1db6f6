"""`python -m devstack up|down|run -- CMD|serve`: the services `make run` and `make test` need.

A service that is configured (DATABASE_URL, REDIS_URL) and reachable is used as it is; otherwise an
embedded one is started under `.data/` and reused by the next run.
"""

import argparse
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from devstack.postgres import PostgresNode, port_is_open, start_primary_and_replica
from devstack.redis import RedisNode
from devstack.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MLOPS_DATA_DIR", ROOT / ".data"))
PRIMARY_PORT = int(os.environ.get("DEVSTACK_PG_PORT", "54329"))
REPLICA_PORT = PRIMARY_PORT + 1
REDIS_PORT = int(os.environ.get("DEVSTACK_REDIS_PORT", "63790"))
DATABASE_NAME = "mlops"
DEMO_TENANT = "demo"
# The settings' LOCAL_READ_ROOT: a tenant's imports read local files only in its folder there.
LOCAL_READ_ROOT = Path(os.environ.get("MLOPS_LOCAL_READ_ROOT") or DATA / "imports")
# Ctrl-C stops everything within about these bounds: open connections get this long, then every process this long.
WEB_GRACEFUL_SHUTDOWN_SECONDS = 2
STOP_GRACE_SECONDS = 5


def _reachable_database(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


def _reachable_redis(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _ensure_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def embedded_postgres() -> tuple[PostgresNode, PostgresNode]:
    return PostgresNode(DATA / "postgres" / "primary", PRIMARY_PORT), PostgresNode(
        DATA / "postgres" / "replica", REPLICA_PORT
    )


def embedded_redis() -> RedisNode:
    return RedisNode(DATA / "redis", REDIS_PORT)


@dataclass
class Stack:
    """The environment that points at the services, and the embedded ones this start started."""

    env: dict[str, str]
    started: list[PostgresNode | RedisNode] = field(default_factory=list)

    def stop_started(self) -> None:
        """Stop what this start started; services that were already running, or configured, keep running."""
        for node in reversed(self.started):
            node.stop()


def up() -> Stack:
    """Make every service reachable and return the environment that points at them."""
    stack = Stack(env={})
    configured_db = os.environ.get("DATABASE_URL")
    if configured_db and _reachable_database(configured_db):
        stack.env["DATABASE_URL"] = configured_db
        stack.env["DATABASE_READER_URL"] = os.environ.get("DATABASE_READER_URL", configured_db)
    else:
        if configured_db:
            print(
                f"devstack: DATABASE_URL is not reachable; starting an embedded PostgreSQL under {DATA}",
                file=sys.stderr,
            )
        was_running = [node.running for node in embedded_postgres()]
        primary, replica = start_primary_and_replica(DATA / "postgres", PRIMARY_PORT, REPLICA_PORT)
        stack.started += [node for node, running in zip((primary, replica), was_running, strict=True) if not running]
        _ensure_database(primary.url(), DATABASE_NAME)
        stack.env["DATABASE_URL"] = primary.url(DATABASE_NAME)
        stack.env["DATABASE_READER_URL"] = replica.url(DATABASE_NAME)
    configured_redis = os.environ.get("REDIS_URL")
    if configured_redis and _reachable_redis(configured_redis):
        stack.env["REDIS_URL"] = configured_redis
    else:
        node = embedded_redis()
        if not port_is_open(node.port):
            stack.started.append(node)
        node.start()
        stack.env["REDIS_URL"] = node.url()
    return stack


def down() -> None:
    primary, replica = embedded_postgres()
    replica.stop()
    primary.stop()
    embedded_redis().stop()


def _sigterm_as_interrupt() -> None:
    """A supervisor's SIGTERM takes the Ctrl-C path, so what was started is stopped either way."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _finish_uninterrupted() -> None:
    """A second Ctrl-C while stopping would leave the rest running: stopping is bounded, so let it finish."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run(command: list[str]) -> int:
    """Run `command` with the services up; stop again the embedded services this run started."""
    _sigterm_as_interrupt()
    stack = up()
    try:
        return subprocess.call(command, env={**os.environ, **stack.env})
    except KeyboardInterrupt:
        return 130
    finally:
        _finish_uninterrupted()
        stack.stop_started()


def platform_prepare(env: dict[str, str], *, tenant: str = DEMO_TENANT) -> str:
    """Migrate, make sure the tenant exists, and return an admin token for it."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate_schemas", "--shared"], env=env, check=True)
    subprocess.run([*manage, "migrate_schemas", "--tenant"], env=env, check=True)
    subprocess.run(
        [*manage, "tenant_create", "--schema", tenant, "--name", tenant.title(), "--if-missing"], env=env, check=True
    )
    return subprocess.run(
        [*manage, "issue_token", "--tenant", tenant, "--user", f"{tenant}@example.com", "--role", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def web_server_command(port: str) -> list[str]:
    # Bounded: uvicorn otherwise waits for every open connection and background task before it exits.
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "mlops.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--timeout-graceful-shutdown",
        str(WEB_GRACEFUL_SHUTDOWN_SECONDS),
    ]


def platform_commands(port: str) -> dict[str, list[str]]:
    """The web server, a worker with beat, and a training worker."""
    python = sys.executable
    return {
        "web": web_server_command(port),
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "mlops",
            "worker",
            "-B",
            "-l",
            "info",
            "--concurrency",
            "2",
            "-s",
            str(DATA / "celerybeat-schedule"),
        ],
        # Training and prediction runs go to their own queue (settings.CELERY_TASK_ROUTES), one at a time, in the
        # worker process itself (solo pool): a trainer's DataLoader workers cannot start inside a prefork child.
        "training": [
            python,
            "-m",
            "celery",
            "-A",
            "mlops",
            "worker",
            "-Q",
            "training",
            "-n",
            "training@%h",
            "-l",
            "info",
            "--pool",
            "solo",
        ],
    }


def platform_start(env: dict[str, str], port: str, *, output=None) -> Supervisor:
    """The platform's processes under a supervisor that restarts one that dies; their output to `output` (a file)
    if given."""
    supervisor = Supervisor(platform_commands(port), env=env, cwd=ROOT, output=output, stop_grace=STOP_GRACE_SECONDS)
    supervisor.start()
    return supervisor


def serve() -> int:
    """Migrate, make sure a demo tenant exists, print a token, then serve web + workers until Ctrl-C, restarting
    a process that dies."""
    _sigterm_as_interrupt()
    stack = up()
    try:
        env = {**os.environ, **stack.env, "MLOPS_DEV_AUTH": os.environ.get("MLOPS_DEV_AUTH", "1")}
        token = platform_prepare(env)
        port = os.environ.get("PORT", "8000")
        print(
            f"\nmlops is up.\n  API:       http://127.0.0.1:{port}/api/v1/\n"
            f"  API docs:  http://127.0.0.1:{port}/api/docs/\n"
            f"  Websocket: ws://127.0.0.1:{port}/ws/jobs/<job id>/?token=...\n"
            f"  Local files tenant {DEMO_TENANT} may import: {LOCAL_READ_ROOT / DEMO_TENANT}/\n"
            f"  Token (tenant {DEMO_TENANT}, admin):\n{token}\n",
            flush=True,
        )
        supervisor = platform_start(env, port)
        try:
            supervisor.run()
        finally:
            _finish_uninterrupted()
            supervisor.stop()
    except KeyboardInterrupt:
        pass
    finally:
        _finish_uninterrupted()
        stack.stop_started()
    print("mlops stopped; data kept under", DATA, flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up", help="start what is missing, leave it running and print the environment")
    sub.add_parser("down", help="stop the embedded services")
    run_parser = sub.add_parser(
        "run",
        help="run a command with the services up and their URLs in its environment; "
        "then stop the embedded services this run started",
    )
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("serve", help="migrate, create the demo tenant and serve web + worker until Ctrl-C")
    args = parser.parse_args()
    if args.action == "up":
        for key, value in up().env.items():
            print(f"export {key}={value}")
        return 0
    if args.action == "down":
        down()
        return 0
    if args.action == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return run(command)
    return serve()


if __name__ == "__main__":
    sys.exit(main())
