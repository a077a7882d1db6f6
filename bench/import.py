"""Import throughput through the real job path, against a bare COPY of the same data.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/import.py --rows 1000000

1. A throwaway tenant; its tables are first filled with --preload rows (default: --rows) by the import
   service, so the measured import lands in tables that already hold that many rows with live indexes.
2. The measured import: a JSONL manifest of --rows new datarows, queued as a job and run by a real Celery
   worker (a subprocess, concurrency 1); wall time from queueing to the job's end. The worker's whole
   process tree is sampled for peak memory (RSS), and the CPU time of the worker and of this machine's
   PostgreSQL processes by role (ProcessCpu): what bounds the rate on this many cores.
3. The reference: the same rows, labels and predictions (converted to COPY text beforehand, not timed) loaded
   by bare COPY into empty tables of the same shape, then the same indexes built.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, ensure_generated, machine, postgres_settings, print_table, setup_django, throwaway_tenant


class PeakMemory:
    """Samples the RSS of a process and all its children every 100 ms."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class ProcessCpu:
    """CPU time (user + system) of the worker's process tree and of this machine's PostgreSQL processes, by role,
    sampled every 500 ms from start to stop: where an import's time goes, and what two cores can give at most. Only
    processes on this machine are seen (a remote PostgreSQL shows nothing), every session counts (run it on an
    otherwise idle server), and a process that ends between two samples loses its last half second."""

    ROLES = ("worker (Python)", "PostgreSQL backends", "WAL streaming and replay", "other PostgreSQL")

    def __init__(self, worker_pid: int):
        self.worker = psutil.Process(worker_pid)
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _role(self, process: psutil.Process, worker_tree: set[int]) -> str | None:
        if process.pid in worker_tree:
            return self.ROLES[0]
        title = " ".join(process.cmdline())
        if not title.startswith("postgres:"):
            return None
        if any(name in title for name in ("startup", "recovering", "walreceiver", "walsender")):
            return self.ROLES[2]
        if any(name in title for name in ("checkpointer", "writer", "autovacuum", "launcher", "archiver")):
            return self.ROLES[3]
        return self.ROLES[1]  # sessions and their parallel workers

    def _sample(self, first: bool = False) -> None:
        try:
            worker_tree = {self.worker.pid, *(child.pid for child in self.worker.children(recursive=True))}
        except psutil.NoSuchProcess:
            worker_tree = set()
        for process in psutil.process_iter():
            try:
                role = self._role(process, worker_tree)
                if role is None:
                    continue
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            used = times.user + times.system
            # A process already running at the start counts from there; one started later counts whole.
            self._first.setdefault(process.pid, used if first else 0.0)
            self._last[process.pid] = (role, used)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> dict[str, float]:
        """Seconds of CPU per role since the start."""
        self._stop.set()
        self._thread.join()
        self._sample()
        seconds = dict.fromkeys(self.ROLES, 0.0)
        for pid, (role, used) in self._last.items():
            seconds[role] += used - self._first[pid]
        return seconds


def _start_worker(env: dict) -> subprocess.Popen:
    log = open(OUT / "bench-worker.log", "wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mlops",
            "worker",
            "--concurrency",
            "1",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while b" ready." not in (OUT / "bench-worker.log").read_bytes():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start; see {OUT / 'bench-worker.log'}")
        time.sleep(0.2)
    return worker


def _import_in_process(dataset, manifest: Path) -> None:
    from datasets.services.imports import ImportOptions, dataset_import_run

    dataset_import_run(
        dataset=dataset,
        uri=str(manifest),
        options=ImportOptions(create_classes=True),
        source="import:preload",
        user="bench",
        progress=lambda counters, errors: None,
    )


def _import_through_worker(
    dataset, manifest: Path, schema: str, import_format: str
) -> tuple[float, dict, int, dict[str, float]]:
    from datasets.services.imports import ImportOptions, dataset_import_start
    from jobs.models import Job
    from tenancy.principal import Principal

    principal = Principal(
        user_id="bench",
        email="",
        tenant_schema=schema,
        workspace_id="bench",
        role="admin",
        database="main",
        expires_at=int(time.time()) + 86400,
    )
    worker = _start_worker({**os.environ})
    memory = PeakMemory(worker.pid)
    cpu = ProcessCpu(worker.pid)
    try:
        started = time.monotonic()
        job = dataset_import_start(
            principal=principal,
            dataset=dataset,
            uri=str(manifest),
            options=ImportOptions(format=import_format, create_classes=True),
        )
        while True:
            job.refresh_from_db()
            if job.is_finished:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        peak = memory.stop()
        cpu_seconds = cpu.stop()
        worker.terminate()
        worker.wait(30)
    if job.status != Job.Status.SUCCEEDED:
        raise SystemExit(f"the import job ended {job.status}: {job.error}")
    return elapsed, job.counters, peak, cpu_seconds


def _reference_copy(manifest: Path, schema: str) -> tuple[float, float, dict]:
    """COPY the same data into empty look-alike tables, then build the tenant tables' indexes on them."""
    import orjson
    from django.db import connection

    folder = manifest.parent
    files = {name: folder / f"reference-{name}.tsv" for name in ("datarow", "label", "prediction")}
    if not all(path.exists() for path in files.values()):
        classes, models = {}, {}
        with (
            open(manifest, "rb") as source,
            open(files["datarow"], "w") as rows,
            open(files["label"], "w") as labels,
            open(files["prediction"], "w") as predictions,
        ):
            for datarow_id, line in enumerate(source, 1):
                r = orjson.loads(line)
                meta = orjson.dumps(r["metadata"]).decode().replace("\\", "\\\\")
                tags = "{" + ",".join(f'"{t}"' for t in r["tags"]) + "}"
                rows.write(
                    f"{datarow_id}\t1\t{r['external_id']}\t{r['uri']}\timage\t{r['width']}\t{r['height']}\t"
                    f"{meta}\t{tags}\t2024-01-01\t2024-01-01\n"
                )
                for item in r["labels"]:
                    x, y, w, h = item["box"]
                    cid = classes.setdefault(item["class"], len(classes) + 1)
                    attributes = orjson.dumps(item["attributes"]).decode()
                    labels.write(
                        f"{datarow_id}\t{cid}\tbox\t{x}\t{y}\t{w}\t{h}\t{w * h}\t\\N\t{attributes}\t"
                        f"import\t2024-01-01\t2024-01-01\tbench\n"
                    )
                for item in r["predictions"]:
                    x, y, w, h = item["box"]
                    cid = classes.setdefault(item["class"], len(classes) + 1)
                    mid = models.setdefault((item["model"], item["version"]), len(models) + 1)
                    predictions.write(
                        f"{datarow_id}\t{mid}\t{cid}\tbox\t{item['score']}\t{x}\t{y}\t{w}\t{h}\t"
                        f"{w * h}\t\\N\t{{}}\t2024-01-01\n"
                    )
    columns = {
        "datarow": "id, dataset_id, external_id, uri, media_type, width, height, metadata, tags, created_at, updated_at",
        "label": "datarow_id, ontology_class_id, kind, x, y, w, h, area, polygon, attributes, source, created_at, "
        "updated_at, updated_by",
        "prediction": "datarow_id, model_version_id, ontology_class_id, kind, score, x, y, w, h, area, polygon, "
        "attributes, created_at",
    }
    tables = {"datarow": "datasets_datarow", "label": "datasets_label", "prediction": "predictions_prediction"}
    counts = {}
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA IF NOT EXISTS bench_reference")
        for name, table in tables.items():
            cursor.execute(f"DROP TABLE IF EXISTS bench_reference.{table}")
            cursor.execute(
                f'CREATE TABLE bench_reference.{table} (LIKE "{schema}".{table} INCLUDING DEFAULTS INCLUDING IDENTITY)'
            )
        started = time.monotonic()
        for name, table in tables.items():
            with (
                open(files[name], "rb") as data,
                cursor.copy(f"COPY bench_reference.{table} ({columns[name]}) FROM STDIN") as copy,
            ):
                while chunk := data.read(1 << 20):
                    copy.write(chunk)
            counts[name] = cursor.rowcount
        copied = time.monotonic() - started
        cursor.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s)",
            [schema, list(tables.values())],
        )
        definitions = cursor.fetchall()
        started = time.monotonic()
        for table, definition in definitions:
            cursor.execute(
                definition.replace(f"ON {schema}.", "ON bench_reference.").replace(" INDEX ", " INDEX ref_", 1)
            )
        indexed = time.monotonic() - started
        cursor.execute("DROP SCHEMA bench_reference CASCADE")
    return copied, indexed, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--preload", type=int, help="rows already in the tables (default: --rows)")
    parser.add_argument(
        "--format",
        choices=["jsonl", "coco"],
        default="jsonl",
        help="coco: the same images and objects as COCO detection JSON (no predictions)",
    )
    args = parser.parse_args()
    preload = args.rows if args.preload is None else args.preload
    OUT.mkdir(parents=True, exist_ok=True)
    setup_django()
    from datasets.models import Dataset
    from projects.models import Project

    preload_manifest = ensure_generated(preload, 0) / "manifest.jsonl" if preload else None
    measured = ensure_generated(args.rows, 10**9, coco=args.format == "coco")
    manifest = measured / ("coco.json" if args.format == "coco" else "manifest.jsonl")
    with throwaway_tenant("bench_import", files=OUT) as tenant:
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        if preload_manifest:
            started = time.monotonic()
            _import_in_process(
                Dataset.objects.create(project=project, name="preload", created_by="bench"), preload_manifest
            )
            print(f"preloaded {preload:,} rows in {time.monotonic() - started:.0f}s", file=sys.stderr)
        dataset = Dataset.objects.create(project=project, name="measured", created_by="bench")
        elapsed, counters, peak, cpu_seconds = _import_through_worker(
            dataset, manifest, tenant.schema_name, args.format
        )
        # The reference loads the same datarows and labels from the JSONL twin of the data.
        copied, indexed, counts = _reference_copy(measured / "manifest.jsonl", tenant.schema_name)
        pg = postgres_settings()

    reference = copied + indexed
    rows = counters["inserted"]
    print_table(
        f"Import of {rows:,} datarows into tables holding {preload:,} ({time.strftime('%Y-%m-%d')}, {machine()})",
        ["path", "seconds", "datarows/s", "labels/s", "predictions/s", "worker peak RSS"],
        [
            [
                f"job (worker, {args.format})",
                f"{elapsed:.1f}",
                f"{rows / elapsed:,.0f}",
                f"{counters['labels'] / elapsed:,.0f}",
                f"{counters['predictions'] / elapsed:,.0f}",
                f"{peak / 2**20:,.0f} MiB",
            ],
            [
                "bare COPY + index builds",
                f"{reference:.1f} ({copied:.1f} + {indexed:.1f})",
                f"{counts['datarow'] / reference:,.0f}",
                f"{counts['label'] / reference:,.0f}",
                f"{counts['prediction'] / reference:,.0f}",
                "-",
            ],
        ],
    )
    print(f"\nratio job / reference: {reference / elapsed:.2f}")
    per_row = {role: seconds / rows * 1e6 for role, seconds in cpu_seconds.items()}
    if per_row["PostgreSQL backends"]:  # PostgreSQL runs on this machine
        total, cores = sum(per_row.values()), os.cpu_count() or 1
        print(
            "CPU per imported datarow during the job, by process: "
            + ", ".join(f"{role} {micros:.0f} µs" for role, micros in per_row.items())
            + f"; {total:.0f} µs in all. With this work per row, {cores} cores cannot import faster than "
            f"{cores * 1e6 / total:,.0f} datarows/s, nor the import's one PostgreSQL session faster than "
            f"{1e6 / per_row['PostgreSQL backends']:,.0f}."
        )
    print(f"PostgreSQL: {pg}")
    print(
        "The import session skips row-by-row foreign key triggers (session_replication_role = replica) when its role "
        "may set it (superuser above, or rds_superuser / GRANT SET ON PARAMETER); see docs/design/datasets-storage.md."
    )


if __name__ == "__main__":
    main()
