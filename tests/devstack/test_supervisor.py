"""The supervisor of `make run`'s processes, on real processes: restarts with a back-off, whole groups stopped."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from devstack.supervisor import Supervisor
from tests.devstack.processes import FORKING_CHILD, alive, wait_until_gone
from tests.fresh_process import REPO_ROOT


def supervisor_of(children: dict[str, list[str]], **options) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    return Supervisor(children, env=dict(os.environ), cwd=REPO_ROOT, say=said.append, **options), said


def family(pid: int) -> list[psutil.Process]:
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


def wait_for_children(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while len(processes := family(pid)) < count:
        assert time.monotonic() < deadline, f"process {pid} did not start its children"
        time.sleep(0.02)
    return processes


def poll_until(supervisor: Supervisor, condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        supervisor.poll()
        time.sleep(0.02)


@pytest.fixture
def stopped_afterwards():
    supervisors: list[Supervisor] = []
    yield supervisors.append
    for supervisor in supervisors:
        supervisor.stop()


def test_a_child_killed_with_sigkill_is_restarted_and_what_it_forked_dies_with_it(stopped_afterwards):
    # given: a child that forked, as a Celery worker forks its beat and pool, and a bystander
    supervisor, said = supervisor_of({"worker": FORKING_CHILD, "web": FORKING_CHILD}, backoff_initial=0.1)
    stopped_afterwards(supervisor)
    supervisor.start()
    first = supervisor.pids()
    worker_family = wait_for_children(first["worker"], 2)
    # when: its main process is killed as an OOM kill would
    os.kill(first["worker"], signal.SIGKILL)
    poll_until(supervisor, lambda: supervisor.pids().get("worker", first["worker"]) != first["worker"])
    # then: the forked one is gone, a new worker runs, and the other child was left alone
    assert wait_until_gone(worker_family, timeout=5) == []
    assert alive(psutil.Process(supervisor.pids()["worker"]))
    assert supervisor.pids()["web"] == first["web"]
    assert len(said) == 1
    assert said[0].startswith("worker exited with code -9 after") and said[0].endswith("restarting it in 0.1s")


def test_restarts_back_off_exponentially_up_to_a_cap():
    # given: a child that dies at once, every time
    supervisor, said = supervisor_of(
        {"broken": [sys.executable, "-c", "raise SystemExit(3)"]},
        backoff_initial=0.05,
        backoff_max=0.2,
        stable_after=60,
    )
    supervisor.start()
    try:
        # when
        poll_until(supervisor, lambda: len(said) == 5)
    finally:
        supervisor.stop()
    # then
    assert [line.rsplit(" ", 1)[1] for line in said] == ["0.05s", "0.1s", "0.2s", "0.2s", "0.2s"]
    assert all(line.startswith("broken exited with code 3 after") for line in said)


def test_the_back_off_starts_over_after_a_child_stayed_up():
    # given: a child that stays up longer than stable_after each time before it dies
    supervisor, said = supervisor_of(
        {"flaky": [sys.executable, "-c", "import time; time.sleep(0.4)"]},
        backoff_initial=0.05,
        backoff_max=5,
        stable_after=0.2,
    )
    supervisor.start()
    try:
        # when
        poll_until(supervisor, lambda: len(said) == 3)
    finally:
        supervisor.stop()
    # then
    assert [line.rsplit(" ", 1)[1] for line in said] == ["0.05s", "0.05s", "0.05s"]


def test_stop_ends_every_group_within_its_grace_even_a_child_that_ignores_sigterm():
    # given: a child that ignores SIGTERM, and one that forked
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(600)",
    ]
    supervisor, _ = supervisor_of({"stubborn": stubborn, "forking": FORKING_CHILD}, stop_grace=1)
    supervisor.start()
    pids = supervisor.pids()
    processes = [*family(pids["stubborn"]), *wait_for_children(pids["forking"], 2)]
    time.sleep(0.3)  # the stubborn one has set its handler
    # when
    started = time.monotonic()
    supervisor.stop()
    # then
    assert time.monotonic() - started < 3
    assert wait_until_gone(processes, timeout=1) == []


def test_children_die_with_a_supervisor_that_is_killed(tmp_path):
    # given: a supervisor in a process of its own, which writes its child's pid
    script = textwrap.dedent(f"""
        import os, sys, time
        from devstack.supervisor import Supervisor
        supervisor = Supervisor({{"sleeper": [sys.executable, "-c", "import time; time.sleep(600)"]}},
                                env=dict(os.environ), cwd=os.getcwd())
        supervisor.start()
        open({str(tmp_path / "pid")!r}, "w").write(str(supervisor.pids()["sleeper"]))
        supervisor.run()
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            assert time.monotonic() < deadline and process.poll() is None, "the supervisor did not start its child"
            time.sleep(0.05)
        child = psutil.Process(int((tmp_path / "pid").read_text()))
        # when: the supervisor is killed, so it cannot stop anything itself
        process.kill()
        process.wait()
        # then: the child got its parent-death signal
        assert wait_until_gone([child], timeout=5) == []
    finally:
        if process.poll() is None:
            process.kill()
