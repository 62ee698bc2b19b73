"""CloudEvents 1.0 in Kafka binary mode: `ce_*` headers around a JSON `data` value."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED = ("id", "source", "type", "specversion")
# Extension attribute carrying the request's correlation id (CloudEvents names: lowercase a-z0-9).
CORRELATION_ATTR = "correlationid"


class MalformedMessage(ValueError):
    """A Kafka record that is not a valid CloudEvent; it can only go to the dead-letter topic."""


@dataclass(frozen=True)
class CloudEvent:
    type: str
    source: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)

    @property
    def correlation_id(self) -> str | None:
        return self.extensions.get(CORRELATION_ATTR)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("ce_specversion", SPECVERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        if self.subject:
            headers.append(("ce_subject", self.subject.encode()))
        headers += [(f"ce_{name}", value.encode()) for name, value in self.extensions.items()]
        return headers

    def kafka_value(self) -> bytes:
        return orjson.dumps(self.data, default=str)


def from_kafka(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None, value: bytes | None
) -> CloudEvent:
    """Parse a binary-mode record; raise MalformedMessage naming what is wrong."""
    attrs: dict[str, str] = {}
    content_type = None
    for name, raw in headers or ():
        try:
            text = raw.decode() if raw is not None else ""
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"header {name} is not UTF-8") from exc
        if name.startswith("ce_"):
            attrs[name[3:]] = text
        elif name.lower() == "content-type":
            content_type = text
    missing = [attr for attr in REQUIRED if not attrs.get(attr)]
    if missing:
        raise MalformedMessage(f"missing CloudEvents header(s): {', '.join('ce_' + m for m in missing)}")
    if attrs["specversion"] != SPECVERSION:
        raise MalformedMessage(f"unsupported ce_specversion {attrs['specversion']!r}")
    if content_type and not content_type.startswith(CONTENT_TYPE):
        raise MalformedMessage(f"unsupported content-type {content_type!r}")
    if value is None:
        raise MalformedMessage("empty value (tombstones are not events)")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("data must be a JSON object")
    try:
        time = datetime.fromisoformat(attrs["time"]) if attrs.get("time") else datetime.now(UTC)
    except ValueError as exc:
        raise MalformedMessage(f"ce_time is not RFC 3339: {attrs['time']!r}") from exc
    known = {"id", "source", "type", "specversion", "time", "subject"}
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        data=data,
        time=time,
        subject=attrs.get("subject"),
        extensions={k: v for k, v in attrs.items() if k not in known},
    )
