"""The platform as the demos run it: the devstack's services (embedded unless configured) and the web, worker and
training worker under the supervisor, on PORT, with a development token. What the demo started stops after it."""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx

from demo.loop import Platform
from devstack.__main__ import DATA, platform_prepare, platform_start, up
from devstack.supervisor import Supervisor

# Not make run's 8000, so a demo can run beside it; PORT picks another.
PORT = os.environ.get("PORT", "8010")
LOG_PATH = DATA / "demo-platform.log"


def _wait_until_serving(url: str, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(supervisor.pids()) < len(supervisor.children):
            raise SystemExit(f"the platform stopped while starting; see its log, {LOG_PATH}")
        with suppress(httpx.TransportError):  # not listening yet
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"the platform did not answer {url}/readyz within 120 s")


@contextmanager
def serving_platform() -> Iterator[Platform]:
    stack = up()
    try:
        env = {**os.environ, **stack.env, "MLOPS_DEV_AUTH": "1", "PORT": PORT}
        token = platform_prepare(env)
        url = f"http://127.0.0.1:{PORT}"
        print(f"Starting the platform on {url} (its logs: {LOG_PATH})...", flush=True)
        with LOG_PATH.open("ab") as log:
            supervisor = platform_start(env, PORT, output=log)
            try:
                _wait_until_serving(url, supervisor)
                yield Platform(url, token)
            finally:
                supervisor.stop()
    finally:
        # Like `make test`: the embedded services a demo started stop with it; those already running keep running.
        stack.stop_started()
