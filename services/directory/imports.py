"""Bulk import of actors from CSV: streamed, validated row by row, idempotent on identifiers or a source id."""

from __future__ import annotations

import asyncio
import codecs
import csv
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from services.common.outbox import PreparedEvent, enqueue_many
from services.contracts.events import ActorRegistered, ActorUpdated, EventPayload
from services.directory import store
from services.directory.model import ActorCreate, ActorRead, to_contract

SERVICE = "directory"
BATCH_SIZE = 500
MAX_REPORTED = 1000
YIELD_EVERY = 10
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
IDENTIFIERS = ("source_id", "siret", "rna", "local_register")


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


def _identity(actor: ActorCreate) -> list[tuple[str, str]]:
    return [(column, getattr(actor, column)) for column in IDENTIFIERS if getattr(actor, column)]


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
                keys = {key for _, actor in batch for key in _identity(actor)}
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
        keys = _identity(actor)
        clash = next((seen[k] for k in keys if k in seen), None)
        if clash is not None:
            report.reject(line, f"repeats an identifier of line {clash} of this file")
            continue
        for k in keys:
            seen[k] = line
        first_pass.append((line, actor))
    try:
        async with pool.acquire() as conn, conn.transaction():
            await _apply(conn, first_pass, report, strict=True)
    except (asyncpg.UniqueViolationError, _BatchRejected):
        # Someone else holds an identifier: retry row by row to name the culprits.
        for line, actor in first_pass:
            single = ImportReport()
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await _apply(conn, [(line, actor)], single, strict=False)
            except asyncpg.UniqueViolationError as exc:
                single.reject(line, f"{exc.constraint_name}: already used by another actor")
            report.created += single.created
            report.updated += single.updated
            report.unchanged += single.unchanged
            for rejected in single.rejected:
                report.reject(rejected["line"], rejected["reason"])


class _BatchRejected(Exception):
    pass


def _comparable(read: ActorRead) -> dict[str, Any]:
    values = read.model_dump(
        mode="json", exclude={"id", "version", "created_at", "updated_at", "status", "distance_km"}
    )
    return values


async def _apply(
    conn: asyncpg.Connection, rows: list[tuple[int, ActorCreate]], report: ImportReport, *, strict: bool
) -> None:
    values: dict[str, list[str]] = {column: [] for column in IDENTIFIERS}
    for _, actor in rows:
        for column, value in _identity(actor):
            values[column].append(value)
    existing = await conn.fetch(
        f"""
        SELECT {store.COLUMNS} FROM actors
        WHERE source_id = ANY($1::text[]) OR siret = ANY($2::text[]) OR rna = ANY($3::text[])
           OR local_register = ANY($4::text[])
        ORDER BY id FOR UPDATE
        """,
        values["source_id"],
        values["siret"],
        values["rna"],
        values["local_register"],
    )
    index: dict[tuple[str, str], asyncpg.Record] = {}
    for row in existing:
        for column in IDENTIFIERS:
            if row[column]:
                index[(column, row[column])] = row
    now = datetime.now(UTC)
    inserts: list[tuple[Any, ...]] = []
    fresh: set[str] = set()
    events: list[tuple[str, EventPayload | PreparedEvent]] = []
    for line, actor in rows:
        matches = {index[k]["id"]: index[k] for k in _identity(actor) if k in index}
        if len(matches) > 1:
            if strict:
                raise _BatchRejected
            report.reject(line, "its identifiers belong to different actors: " + ", ".join(str(i) for i in matches))
            continue
        if not matches:
            actor_id = uuid.uuid4()
            row_values = store.row_values(actor)
            inserts.append((actor_id, now, now, *row_values.values()))
            fresh.add(str(actor_id))
            data = {"actor": store.contract_data(actor_id, 1, row_values, now)}
            events.append((str(actor_id), PreparedEvent(ActorRegistered.ce_type, ActorRegistered.topic, data)))
            report.created += 1
            continue
        current = store.to_read(next(iter(matches.values())))
        proposed = store.read_from_values(
            uuid.UUID(current.id), current.version, store.row_values(actor), current.created_at, current.updated_at
        )
        if _comparable(proposed) == _comparable(current) and current.status == "active":
            report.unchanged += 1
            continue
        row = await store.update_actor(conn, uuid.UUID(current.id), actor, None)
        assert row is not None
        if current.status != "active":
            row = await store.set_status(conn, uuid.UUID(current.id), "active", None) or row
        read = store.to_read(row)
        events.append((read.id, ActorUpdated(actor=to_contract(read))))
        report.updated += 1
    if inserts:
        columns = ["id", "created_at", "updated_at", *store.row_values(rows[0][1]).keys()]
        await conn.copy_records_to_table("actors", records=inserts, columns=columns)
    # New actors' keys are fresh ids nobody else writes: no key lock needed for them.
    await enqueue_many(conn, service=SERVICE, events=events, fresh_keys=fresh)


def read_csv_lines(path: str) -> Iterable[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        yield from handle
