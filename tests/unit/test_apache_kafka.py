"""The Apache Kafka starter: one pinned version everywhere, and a KRaft configuration as production expects."""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from services.common import apache_kafka
from services.common.apache_kafka import KAFKA_VERSION, POM, ApacheKafkaBroker, new_cluster_id
from services.contracts.topics import min_insync_replicas

ROOT = Path(__file__).resolve().parents[2]


def test_the_pom_and_compose_run_the_starters_version() -> None:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = ET.parse(POM).getroot().find("m:properties", namespace)  # noqa: S314 - our own file
    assert properties is not None
    assert properties.findtext("m:kafka.version", namespaces=namespace) == KAFKA_VERSION
    images = re.findall(r"image:\s*apache/kafka:(\S+)", (ROOT / "docker-compose.yml").read_text())
    assert images == [KAFKA_VERSION]


def test_one_process_is_broker_and_controller_with_topics_from_the_plan(tmp_path: Path) -> None:
    broker = ApacheKafkaBroker(tmp_path, 19999)
    config = dict(
        line.split("=", 1) for line in broker._write_config().read_text().splitlines() if line and "=" in line
    )
    assert config["process.roles"] == "broker,controller"
    assert config["listeners"].startswith("PLAINTEXT://127.0.0.1:19999,CONTROLLER://127.0.0.1:")
    assert config["controller.quorum.voters"] == f"1@127.0.0.1:{broker.controller_port}"
    assert config["auto.create.topics.enable"] == "false"
    assert config["default.replication.factor"] == "1"  # the plan's durability on one node
    assert config["min.insync.replicas"] == str(min_insync_replicas(1))
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert Path(config["log.dirs"]).is_relative_to(tmp_path)


def test_the_controller_takes_neither_the_brokers_port_nor_one_the_stack_binds_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offered = iter([19999, 20001, 20003, 20002])  # what free_port() answers, one call after the other
    monkeypatch.setattr(apache_kafka, "free_port", lambda host="127.0.0.1": next(offered))
    broker = ApacheKafkaBroker(tmp_path, 19999, reserved_ports=[20001, 20003])
    broker._write_config()
    assert broker.controller_port == 20002


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(10)}
    assert len(ids) == 10
    for cluster_id in ids:
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first UUID drawn encodes to '-' + ..., which kafka-storage would read as an option.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(range(16)))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    cluster_id = new_cluster_id()
    assert not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==") == bytes(range(16))
