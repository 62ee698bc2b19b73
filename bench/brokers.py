"""Tansu and Apache Kafka side by side: outbox relay latency and throughput, need → webhook and publishNeed → matchFound.

Run `python -m bench.brokers [--rate 1000] [--seconds 10] [--needs 200] [--brokers tansu,kafka]`. Each broker runs
the same scenarios, one broker after the other on this machine, and one table compares them; it is not a test.
Apache Kafka 4.1 (KRaft, one combined broker+controller, `services/common/apache_kafka.py`) needs Java 17+ and its
jars (`make kafka`); Tansu is the embedded broker with memory storage.

- Outbox relay: one relay publishing what writers commit, from commit to the broker's acknowledgement — paced at
  `--rate` events/s (one event per transaction, 2 writers), then 4 writer processes as fast as they can.
- End to end on the whole stack (`maillage dev` with demo data, `dev_broker` set): a need published over REST →
  the first signed `match.found` webhook; and `publishNeed` on the gateway → `matchFound` on a graphql-transport-ws
  subscription. One need at a time (concurrency 1), the first ten of each run warm the processes up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.gateway import need_to_subscription
from bench.matching import end_to_end, on_dev_stack
from bench.outbox import TOPIC, scenario_latency, scenario_throughput
from services.common.apache_kafka import KAFKA_VERSION, ApacheKafkaBroker, kafka_available
from services.common.db import create_pool, ensure_database, migrate
from services.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.common.kafka import ensure_topics
from services.common.settings import Settings, with_database

NAMES = {"tansu": "Tansu (memory)", "kafka": f"Kafka {KAFKA_VERSION}"}


@contextmanager
def running_broker(name: str, home: Path) -> Iterator[str]:
    """A fresh broker of this kind; its bootstrap address."""
    broker: EmbeddedBroker | ApacheKafkaBroker
    if name == "kafka":
        broker = ApacheKafkaBroker(home / "kafka", free_port())
    else:
        broker = EmbeddedBroker(free_port(), log_path=home / "tansu.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


async def outbox_rows(name: str, database: str, bootstrap: str, rate: float, seconds: float) -> list[dict[str, object]]:
    url = with_database(database, f"maillage_bench_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    await migrate(url, ["services.common"])
    # The production default (idempotent producer) on Kafka; Tansu refuses idempotent producers, as in `maillage dev`.
    settings = Settings(
        _env_file=None, kafka_bootstrap=bootstrap, log_format="text", kafka_idempotent_producer=name == "kafka"
    )
    await ensure_topics(settings, [(TOPIC, 6)])
    pool = await create_pool(url, min_size=8, max_size=8)
    try:
        return [
            await scenario_latency(pool, settings, url, rate, seconds, 2),
            await scenario_throughput(pool, settings, url, seconds, 4, 1),
        ]
    finally:
        await pool.close()


async def whole_stack(stack: Any, needs: int) -> dict[str, Any]:
    webhook = await end_to_end(stack, needs)
    subscription = await need_to_subscription(stack, needs)
    return {"webhook": webhook, "subscription": subscription}


def measure(name: str, args: argparse.Namespace, postgres: EmbeddedPostgres) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"maillage-bench-{name}-"))
    with running_broker(name, home) as bootstrap:
        outbox = asyncio.run(outbox_rows(name, postgres.url, bootstrap, args.rate, args.seconds))
    stack = on_dev_stack(f"brokers-{name}", lambda stack: whole_stack(stack, args.needs), broker=name)
    return {"outbox": outbox, **stack}


def cell(p50: float, p99: float) -> str:
    return f"{p50:7.1f} / {p99:7.1f}"


def main(args: argparse.Namespace) -> None:
    brokers = list(args.brokers)
    if "kafka" in brokers and (why := kafka_available()) is not None:
        brokers.remove("kafka")
        print(f"Apache Kafka skipped: {why}")
    home = Path(tempfile.mkdtemp(prefix="maillage-bench-brokers-"))
    postgres = EmbeddedPostgres(home / "postgres", free_port())
    postgres.start()
    try:
        results = {name: measure(name, args, postgres) for name in brokers}
    finally:
        postgres.stop()
    width = 20
    print(f"\nBrokers side by side on {os.cpu_count()} cores (PostgreSQL 18 here; one broker after the other)")
    print(f"{'measure (ms: p50 / p99)':<44}" + "".join(f"{NAMES[b]:>{width}}" for b in brokers))
    rows: list[tuple[str, list[str]]] = []
    latency = [results[b]["outbox"][0] for b in brokers]
    rows.append((f"outbox commit → ack @ {args.rate:.0f} ev/s", [cell(r["p50"], r["p99"]) for r in latency]))
    rows.append(("  events lost", [f"{r['lost']}" for r in latency]))
    sustained = [results[b]["outbox"][1] for b in brokers]
    rows.append(("outbox sustained, 4 writers (acked ev/s)", [f"{r['throughput']:.0f}" for r in sustained]))
    rows.append(("  its commit → ack", [cell(r["p50"], r["p99"]) for r in sustained]))
    webhook = [results[b]["webhook"] for b in brokers]
    rows.append((f"need POST → first signed webhook ({args.needs})", [cell(*r["webhook"]) for r in webhook]))
    rows.append(("  bad signatures", [f"{r['bad_signatures']}" for r in webhook]))
    subscription = [results[b]["subscription"] for b in brokers]
    rows.append((f"publishNeed → matchFound ({args.needs})", [cell(r["p50"], r["p99"]) for r in subscription]))
    rows.append(("  needs with no matchFound in 5 s", [f"{r['missed']:.0f}" for r in subscription]))
    for label, cells in rows:
        print(f"{label:<44}" + "".join(f"{c:>{width}}" for c in cells))
    print(
        "targets: outbox p50 < 10, p99 < 50 at 1,000 ev/s; need → webhook and publishNeed → matchFound p50 < 50, p99 < 150"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced outbox events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="of each outbox scenario")
    parser.add_argument("--needs", type=int, default=200, help="needs published one at a time, per measure")
    parser.add_argument("--brokers", type=lambda v: [b for b in v.split(",") if b], default=["tansu", "kafka"])
    main(parser.parse_args())
