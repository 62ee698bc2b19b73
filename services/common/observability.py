"""Structured JSON logs with a correlation id, and the Prometheus metrics every process exports."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pythonjsonlogger.json import JsonFormatter

CORRELATION_HEADER = "X-Correlation-ID"

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class _CorrelationFilter(logging.Filter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        record.process_name = self.process
        return True


def configure_logging(process: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger to stderr, one JSON object per line carrying the correlation id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CorrelationFilter(process))
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s %(process_name)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process_name)s %(correlation_id)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# --- metrics (one registry per process; labels say which service) --------------------
HTTP_REQUESTS = Histogram(
    "maillage_http_request_seconds",
    "HTTP request duration",
    ["service", "method", "route", "status"],
)
OUTBOX_PUBLISHED = Counter("maillage_outbox_published_total", "Outbox rows acknowledged by the broker", ["service"])
OUTBOX_BACKLOG = Gauge("maillage_outbox_backlog", "Outbox rows committed but not yet acknowledged", ["service"])
OUTBOX_LAG_SECONDS = Histogram(
    "maillage_outbox_commit_to_ack_seconds",
    "Outbox row creation to broker acknowledgement",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
CONSUMER_PROCESSED = Counter(
    "maillage_consumer_messages_total",
    "Messages handled by consumers",
    ["consumer", "topic", "outcome"],
)
CONSUMER_LAG = Gauge(
    "maillage_consumer_lag",
    "Messages between the consumer's position and the partition end",
    ["consumer", "topic", "partition"],
)
DLQ_MESSAGES = Counter("maillage_dlq_messages_total", "Messages sent to a dead-letter topic", ["consumer", "topic"])
WORKER_RESTARTS = Counter(
    "maillage_worker_restarts_total", "Background loops of a worker restarted after an unexpected end", ["loop"]
)


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Serve this process's metrics on a port of their own (prometheus_client's server, in a thread); the stop function.

    The gateway's public port must not show them: Prometheus scrapes this one, which stays inside the network.
    """
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
