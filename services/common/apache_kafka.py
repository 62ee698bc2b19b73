"""Apache Kafka's own broker for CI and `maillage dev --broker kafka`: jars from Maven Central, KRaft, one process."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from services.common.embedded import PortInUse, die_with_parent, free_port, port_is_free, stop_process, wait_for_port
from services.contracts.topics import min_insync_replicas

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_VERSION = "4.1.0"  # deploy/kafka/pom.xml and docker-compose.yml's image (tests/unit/test_deploy.py)
# The line a KRaft server logs once its broker half serves requests (kafka.server.KafkaRaftServer).
STARTED_LINE = b"Kafka Server started"

LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      # Its start and stop are what a reader of the log needs; warnings and errors come from everywhere.
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or the broker's jars could not be fetched."""


def java_binary() -> str | None:
    """The Java that runs the broker: $JAVA_HOME's, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def kafka_available() -> str | None:
    """None when the broker can run here; else why not (for a test's skip reason)."""
    if java_binary() is None:
        return "no Java on this machine (Apache Kafka's broker needs Java 17+)"
    if not (ROOT / ".maillage" / "kafka" / "lib").exists() and shutil.which("mvn") is None:
        return "no Maven on this machine to fetch Apache Kafka's jars (deploy/kafka/pom.xml)"
    return None


def fetch_jars(lib_dir: Path) -> Path:
    """Apache Kafka's jars, copied from Maven Central by deploy/kafka/pom.xml on first use."""
    if lib_dir.exists() and any(lib_dir.glob("kafka_2.13-*.jar")):
        return lib_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable("Maven (mvn) is needed once to fetch Apache Kafka's jars")
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-Dkafka.lib={lib_dir}"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0 or not any(lib_dir.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(f"fetching Apache Kafka's jars failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return lib_dir


def new_cluster_id() -> str:
    """A cluster id as Kafka writes them (a UUID in URL-safe base64, unpadded) that a command line reads as a value."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # One id in 64 starts with '-', which kafka-storage's argument parser takes for an option (CI failed on one);
        # Kafka's own Uuid.randomUuid() draws again for the same reason.
        if not cluster_id.startswith("-"):
            return cluster_id


class ApacheKafkaBroker:
    """One combined broker and controller (`process.roles=broker,controller`) on 127.0.0.1, data under `home`.

    Storage is formatted once; a second start on the same directory keeps the topics. The JVM gets SIGTERM when its
    parent dies, so a killed test run leaves no broker behind.
    """

    def __init__(
        self,
        home: Path,
        port: int,
        *,
        host: str = "127.0.0.1",
        heap: str = "512m",
        lib_dir: Path | None = None,
        auto_create_topics: bool = False,
        reserved_ports: Iterable[int] = (),
    ) -> None:
        self.home = home.resolve()
        self.port = port
        self.host = host
        self.heap = heap
        self.lib_dir = lib_dir or ROOT / ".maillage" / "kafka" / "lib"
        self.auto_create_topics = auto_create_topics
        self.controller_port: int | None = None
        # Ports the caller will bind after the broker started (a stack's services): the controller takes none of them.
        self.reserved_ports = frozenset(reserved_ports)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    def _controller_port(self) -> int:
        """A free port for the controller listener, neither the broker's nor a reserved one.

        free_port() only says the port is free now: a port the caller chose the same way for a process it starts
        later is free too until that process binds it, so the two could get the same port.
        """
        while True:
            port = free_port(self.host)
            if port != self.port and port not in self.reserved_ports:
                return port

    def _write_config(self) -> Path:
        controller_port = self.controller_port or self._controller_port()
        self.controller_port = controller_port
        config = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            # One broker: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests and the dev stack join groups often: no 3 s wait for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Topics come from the topic plan (`maillage topics`), as in production, with its durability on one node.
            "auto.create.topics.enable": "true" if self.auto_create_topics else "false",
            "default.replication.factor": "1",
            "min.insync.replicas": str(min_insync_replicas(1)),
            "log.retention.hours": "168",
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
        (self.home / "log4j2.yaml").write_text(LOG4J2)
        return path

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        java = java_binary()
        if java is None:
            raise KafkaUnavailable("Java is needed to run Apache Kafka's broker")
        return [
            java,
            f"-Xmx{heap or self.heap}",
            f"-Xms{heap or self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
            *args,
        ]

    def format_storage(self, config: Path) -> bool:
        """Format KRaft storage unless it was; True when formatted now."""
        if (self.home / "data" / "meta.properties").exists():
            return False
        done = subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", f"--cluster-id={new_cluster_id()}", "-c", str(config), heap="256m"
            ),
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise KafkaUnavailable(f"formatting Kafka storage failed:\n{done.stdout.decode()}{done.stderr.decode()}")
        return True

    def start(self, timeout_s: float = 90.0) -> None:
        if not port_is_free(self.host, self.port):
            raise PortInUse(self.port, "Apache Kafka broker", "MAILLAGE_KAFKA_PORT")
        self.home.mkdir(parents=True, exist_ok=True)
        fetch_jars(self.lib_dir)
        config = self._write_config()
        self.format_storage(config)
        started_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(config)),
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        wait_for_port(self.host, self.port, timeout_s, self.process, "Apache Kafka broker")
        while STARTED_LINE not in self._log_since(started_at):
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"Apache Kafka broker exited with code {code}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Apache Kafka broker did not start within {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(0.1)

    def _log_since(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read()

    def stop(self) -> None:
        # SIGTERM runs the broker's controlled shutdown (its shutdown hook); it flushes its logs.
        stop_process(self.process, signal.SIGTERM, timeout_s=30)
        self.process = None
