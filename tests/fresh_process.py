"""Python in a new interpreter with exactly the environment a test gives it.

Settings act when they are imported (production checks, Sentry, logging), so start-up behaviour can only
be seen from a process that imports them afresh.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Nothing of this process's environment leaks in but PATH, so a stray SENTRY_DSN or MLOPS_ENV cannot."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "mlops.settings", **env},
    )
