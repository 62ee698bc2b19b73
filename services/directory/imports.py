"""Bulk import of actors from CSV: streamed, validated row by row, idempotent on identifiers or a source id."""

from __future__ import annotations

import asyncio
import codecs
import csv
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import ValidationError

from services.directory import rules, service
from services.directory.model import ActorCreate

BATCH_SIZE = 500
MAX_REPORTED = 1000
WRITERS = 2
YIELD_EVERY = 10

COLUMNS = (
    "name",
    "kind",
    "commune_code",
    "siret",
    "rna",
    "local_register",
    "source_id",
    "legal_form",
    "description",
    "themes",
    "service_types",
    "activities",
    "street",
    "postal_code",
    "lat",
    "lon",
    "qpv_code",
    "website",
    "networks",
    "contact_name",
    "contact_email",
    "contact_phone",
)
REQUIRED = ("name", "kind", "commune_code")


class RowError(ValueError):
    pass


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.replace(",", ";").split(";") if part.strip()]


def parse_activities(value: str) -> list[dict[str, Any]]:
    """`theme/service_type/area;…` where area is `national`, `radius:30` or territory codes (`DEP-25 COM-39300`)."""
    activities = []
    for chunk in value.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        parts = chunk.split("/")
        if len(parts) != 3:
            raise RowError(f"activities: {chunk!r} is not theme/service_type/area")
        theme, service_type, area_text = (p.strip() for p in parts)
        area: dict[str, Any]
        if area_text == "national":
            area = {"kind": "national"}
        elif area_text.startswith("radius:"):
            try:
                area = {"kind": "radius", "radius_km": float(area_text.removeprefix("radius:"))}
            except ValueError as exc:
                raise RowError(f"activities: {area_text!r} is not radius:<km>") from exc
        else:
            area = {"kind": "territories", "territories": area_text.split()}
        activities.append({"theme": theme, "service_type": service_type, "area": area})
    return activities


def row_to_actor(row: dict[str, str]) -> ActorCreate:
    """One CSV row as a validated actor; raise RowError with the field and the rule."""
    missing = [name for name in REQUIRED if not (row.get(name) or "").strip()]
    if missing:
        raise RowError(f"{', '.join(missing)}: required")
    value = {k: (v or "").strip() for k, v in row.items() if k in COLUMNS}
    data: dict[str, Any] = {
        name: value[name] or None
        for name in (
            "name",
            "kind",
            "commune_code",
            "siret",
            "rna",
            "local_register",
            "source_id",
            "legal_form",
            "street",
            "postal_code",
            "qpv_code",
            "website",
        )
        if name in value
    }
    data["description"] = value.get("description", "")
    data["themes"] = _list(value.get("themes", ""))
    data["service_types"] = _list(value.get("service_types", ""))
    data["networks"] = _list(value.get("networks", ""))
    data["activities"] = parse_activities(value.get("activities", ""))
    if value.get("lat") or value.get("lon"):
        try:
            data["location"] = {"lat": float(value["lat"]), "lon": float(value["lon"])}
        except (KeyError, ValueError) as exc:
            raise RowError("lat, lon: both numbers, in decimal degrees") from exc
    contact = {k: value.get(f"contact_{k}") or None for k in ("name", "email", "phone")}
    if any(contact.values()):
        data["contact"] = contact
    try:
        return ActorCreate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "row"
        raise RowError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from exc


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_count: int = 0
    lines: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED:
            self.rejected.append({"line": line, "reason": reason})

    def add(self, outcome: service.BatchOutcome) -> None:
        self.created += outcome.created
        self.updated += outcome.updated
        self.unchanged += outcome.unchanged
        for line, reason in outcome.rejected:
            self.reject(line, reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected_count": self.rejected_count,
            "rejected": self.rejected,
            "rows": self.lines,
        }


async def decode_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """UTF-8 (BOM tolerated) lines from a byte stream, keeping line ends for the csv module."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


async def _rows(lines: AsyncIterable[str]) -> AsyncIterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; lines are buffered only until a record is complete."""
    header: list[str] | None = None
    buffer: list[str] = []
    line_no = 0
    start = 1
    async for line in lines:
        line_no += 1
        if header is None and not buffer and line.startswith("#"):
            start = line_no + 1
            continue  # a comment before the header (the data set's provenance)
        buffer.append(line)
        if sum(part.count('"') for part in buffer) % 2:
            continue  # inside a quoted field spanning lines
        record = next(csv.reader(buffer), [])
        buffer = []
        if header is None:
            header = [name.strip().lower() for name in record]
            unknown = [name for name in header if name and name not in COLUMNS]
            if unknown or not set(REQUIRED) <= set(header):
                raise RowError(
                    f"header: unknown column(s) {', '.join(unknown)}"
                    if unknown
                    else f"header: needs the columns {', '.join(REQUIRED)}"
                )
            start = line_no + 1
            continue
        if record and any(cell.strip() for cell in record):
            yield start, dict(zip(header, record, strict=False))
        start = line_no + 1


async def import_stream(
    pool: asyncpg.Pool, lines: AsyncIterable[str], progress: Callable[[int], None] | None = None
) -> ImportReport:
    report = ImportReport()
    batch: list[tuple[int, ActorCreate]] = []
    # Batches are written by WRITERS transactions at once while the next rows are parsed and
    # validated (the database works in its own processes). Batches in flight together share no
    # identifier, so that a repeated identifier is always applied in file order.
    in_flight: deque[tuple[asyncio.Task[None], set[tuple[str, str]]]] = deque()

    async def write(rows: list[tuple[int, ActorCreate]]) -> None:
        await _import_batch(pool, rows, report)
        if progress:
            progress(len(rows))

    try:
        async for line, row in _rows(lines):
            report.lines += 1
            try:
                batch.append((line, row_to_actor(row)))
            except RowError as exc:
                report.reject(line, str(exc))
            if in_flight and report.lines % YIELD_EVERY == 0:
                # Let the writers send their next statements: reading a local file never suspends,
                # so without this a write would only progress at the next batch boundary.
                await asyncio.sleep(0)
            if len(batch) >= BATCH_SIZE:
                keys = {key for _, actor in batch for key in rules.identity(actor)}
                while in_flight and (len(in_flight) >= WRITERS or any(keys & held for _, held in in_flight)):
                    await in_flight.popleft()[0]
                in_flight.append((asyncio.create_task(write(batch)), keys))
                batch = []
    except RowError as exc:
        report.reject(1, str(exc))
    except UnicodeDecodeError:
        report.reject(report.lines + 1, "file: not UTF-8 text")
    finally:
        while in_flight:
            await in_flight.popleft()[0]
    if batch:
        await write(batch)
    return report


async def _import_batch(pool: asyncpg.Pool, batch: list[tuple[int, ActorCreate]], report: ImportReport) -> None:
    # A row repeating an identifier of an earlier row of the same batch waits for the next round.
    seen: dict[tuple[str, str], int] = {}
    first_pass: list[tuple[int, ActorCreate]] = []
    for line, actor in batch:
        keys = rules.identity(actor)
        clash = next((seen[k] for k in keys if k in seen), None)
        if clash is not None:
            report.reject(line, f"repeats an identifier of line {clash} of this file")
            continue
        for k in keys:
            seen[k] = line
        first_pass.append((line, actor))
    try:
        report.add(await service.import_batch(pool, first_pass, strict=True))
    except service.BatchRejected:
        # Someone else holds an identifier: retry row by row to name the culprits.
        for line, actor in first_pass:
            report.add(await service.import_batch(pool, [(line, actor)], strict=False))


def read_csv_lines(path: str) -> Iterable[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        yield from handle
