"""`make demo`: start the platform (embedded services unless configured), write the digits, run the loop over REST.

python -m demo [--rounds 2] [--batch 100] [--epochs 15]
"""

import argparse
import os
import sys
import time
from contextlib import suppress

import httpx

from demo.digits import write_digits
from demo.loop import LoopSettings, Platform, run_loop
from devstack.__main__ import DATA, DEMO_TENANT, LOCAL_READ_ROOT, platform_prepare, platform_start, up
from devstack.supervisor import Supervisor

# Not make run's 8000, so the demo can run beside it; PORT picks another.
PORT = os.environ.get("PORT", "8010")


def _wait_until_serving(url: str, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(supervisor.pids()) < len(supervisor.children):
            raise SystemExit(f"the platform stopped while starting; see its log, {DATA / 'demo-platform.log'}")
        with suppress(httpx.TransportError):  # not listening yet
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"the platform did not answer {url}/readyz within 120 s")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=LoopSettings.rounds)
    parser.add_argument("--batch", type=int, default=LoopSettings.batch, help="labels revealed per round")
    parser.add_argument("--epochs", type=int, default=LoopSettings.epochs)
    args = parser.parse_args()
    # The images go in the demo tenant's folder of the local read root, the only one its imports may read.
    files = write_digits(LOCAL_READ_ROOT / DEMO_TENANT / "demo-digits")
    stack = up()
    try:
        env = {**os.environ, **stack.env, "MLOPS_DEV_AUTH": "1", "PORT": PORT}
        token = platform_prepare(env)
        url = f"http://127.0.0.1:{PORT}"
        log_path = DATA / "demo-platform.log"
        print(f"Starting the platform on {url} (its logs: {log_path})...", flush=True)
        with log_path.open("ab") as log:
            supervisor = platform_start(env, PORT, output=log)
            try:
                _wait_until_serving(url, supervisor)
                outcome = run_loop(
                    Platform(url, token),
                    files,
                    LoopSettings(rounds=args.rounds, batch=args.batch, epochs=args.epochs),
                    project_name=f"digits loop {time.strftime('%Y-%m-%d %H:%M:%S')}",
                )
            finally:
                supervisor.stop()
    finally:
        # Like `make test`: the embedded services this demo started stop with it; those already running keep running.
        stack.stop_started()
    print("\nHeld-out accuracy of every model (the same held-out slice for all):")
    print(outcome.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
