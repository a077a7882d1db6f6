"""Keep `make run`'s processes running: restart one that dies, after a back-off, and stop all of them, every
process each one started included, within a bound.

Each child leads a session (and so a process group) of its own: a Celery worker's pool children and embedded beat
stay in it, so one `killpg` reaches them even after the worker's main process is gone, and the terminal's Ctrl-C
reaches only this supervisor, which then stops them all.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
# Loaded before any fork: a forked child should only call prctl, not load libraries.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the supervisor dies, even by SIGKILL (Linux only)."""

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
        # The supervisor may have died between the fork and the prctl, when no signal would come any more.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    # Deaths in a row that came before the child stayed up for `stable_after` seconds.
    quick_deaths: int = 0
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Start `children` (name -> command); `poll()` restarts the dead ones, `stop()` ends every group.

    A child that dies is restarted after `backoff_initial` seconds, doubling with each quick death up to
    `backoff_max`; one that stayed up `stable_after` seconds starts over from `backoff_initial`."""

    children: dict[str, list[str]]
    env: dict[str, str]
    cwd: Path
    output: object = None
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    stable_after: float = 60.0
    stop_grace: float = 5.0
    say: Callable[[str], None] = field(default=lambda line: print(f"devstack: {line}", file=sys.stderr, flush=True))
    _children: list[Child] = field(default_factory=list, init=False)

    def start(self) -> None:
        self._children = [Child(name, command) for name, command in self.children.items()]
        for child in self._children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        streams = {"stdout": self.output, "stderr": subprocess.STDOUT} if self.output is not None else {}
        child.process = subprocess.Popen(
            child.command,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
            **streams,
        )
        child.started_at = time.monotonic()
        child.restart_at = None

    def pids(self) -> dict[str, int]:
        """The main process of each running child."""
        return {
            child.name: child.process.pid
            for child in self._children
            if child.process is not None and child.process.poll() is None
        }

    def poll(self) -> None:
        """Schedule a restart for each child that died; restart those whose back-off is over."""
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is None and child.process.poll() is not None:
                # What the dead main process left in its group (pool children, beat) goes with it.
                _signal_group(child.process.pid, signal.SIGKILL)
                uptime = now - child.started_at
                child.quick_deaths = 1 if uptime >= self.stable_after else child.quick_deaths + 1
                delay = min(self.backoff_initial * 2 ** (child.quick_deaths - 1), self.backoff_max)
                child.restart_at = now + delay
                self.say(
                    f"{child.name} exited with code {child.process.returncode} after {uptime:.0f}s; "
                    f"restarting it in {delay:g}s"
                )
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def run(self, interval: float = 0.5) -> None:
        """Poll until interrupted (Ctrl-C, or SIGTERM turned into KeyboardInterrupt by the caller)."""
        with suppress(KeyboardInterrupt):
            while True:
                self.poll()
                time.sleep(interval)

    def stop(self) -> None:
        """SIGTERM each child's main process, which stops its own children; after `stop_grace` seconds, SIGKILL
        every group, with whatever is left in it."""
        started = [child.process for child in self._children if child.process is not None]
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for process in started:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0))
        # Also groups whose main process already exited: a worker's pool children may outlive it.
        for process in started:
            _signal_group(process.pid, signal.SIGKILL)
        for process in started:
            process.wait()
