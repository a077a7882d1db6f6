"""What every benchmark needs: Django set up against the devstack services, a throwaway tenant, the machine."""

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"


def setup_django() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("MLOPS_ENV", "development")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_schemas", "--shared", verbosity=0)


@contextmanager
def throwaway_tenant(prefix: str, *, files: Path | None = None):
    """A fresh tenant schema for one run, dropped afterwards (with its folder of local files) so runs neither
    interfere nor fill the disk. With `files`, that folder is a link to it: the tenant's imports read the data
    generated there, which every run reuses."""
    from django.db import connection

    from mlops.storage import tenant_read_folder
    from tenancy.context import tenant_scope
    from tenancy.models import Tenant
    from tenancy.services import tenant_provision

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    tenant_provision(schema_name=schema, name=schema)
    folder = tenant_read_folder(schema)
    if files:
        folder.rmdir()
        folder.symlink_to(files.resolve(), target_is_directory=True)
    try:
        with tenant_scope(schema) as tenant:
            yield tenant
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        Tenant.objects.filter(schema_name=schema).delete()
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, Python {platform.python_version()}"
    )


def postgres_settings() -> str:
    from django.db import connection

    names = [
        "server_version",
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "max_wal_size",
        "synchronous_commit",
        "fsync",
        "full_page_writes",
        "wal_level",
        "max_parallel_workers_per_gather",
    ]
    with connection.cursor() as cursor:
        # current_setting() writes each value with its unit (shared_buffers=256MB); setting || unit read "327688kB"
        cursor.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name", [names]
        )
        settings = [f"{name}={value}" for name, value in cursor.fetchall()]
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        return ", ".join([*settings, f"superuser={'on' if cursor.fetchone()[0] else 'off'}"])


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def ensure_generated(rows: int, offset: int, *, coco: bool = False) -> Path:
    folder = OUT / f"rows-{rows}-from-{offset}"
    wanted = folder / ("coco.json" if coco else "manifest.jsonl")
    if not wanted.exists():
        started = time.monotonic()
        command = [
            sys.executable,
            str(REPO / "bench" / "generate.py"),
            "--rows",
            str(rows),
            "--offset",
            str(offset),
            "--out",
            str(folder),
        ] + (["--coco"] if coco else [])
        subprocess.run(command, check=True)
        print(f"generated {wanted} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return folder


def start_server(log_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """uvicorn serving mlops.asgi as production does (one process), with `env` on top of this one's environment;
    returns it once /healthz answers, and its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
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
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with suppress(httpx.TransportError):  # not listening yet
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the HTTP server did not start; see {log_path}")
        time.sleep(0.2)
