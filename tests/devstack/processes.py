"""What the devstack tests ask of processes: whether they are gone, and a child that forks like a Celery worker."""

import sys
import time

import psutil

# Forks one process (as a Celery worker forks its pool and embedded beat), which stays in the group; both sleep.
FORKING_CHILD = [sys.executable, "-c", "import os, time\nos.fork()\ntime.sleep(600)"]


def alive(process: psutil.Process) -> bool:
    """Running, and still the process we saw: a zombie waiting for its reaper is gone for our purposes."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `processes` still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := [process for process in processes if alive(process)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
