"""The `maillage` command: serve, run the embedded stack, mint tokens, migrate, replay, rebuild replicas, DLQs,
invite and erase persons."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

import asyncpg
import typer

from services.common.settings import get_settings

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Maillage: the territorial cooperation hub of the ESS."
)
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead-lettered messages.")
app.add_typer(dlq_app, name="dlq")
credentials_app = typer.Typer(no_args_is_help=True, help="Partner credentials: issue, list, revoke (the gateway's).")
app.add_typer(credentials_app, name="credentials")
import_app = typer.Typer(no_args_is_help=True, help="Bulk imports.")
app.add_typer(import_app, name="import")


class Process(StrEnum):
    directory = "directory"
    events = "events"
    matching = "matching"
    gateway = "gateway"


class Service(StrEnum):
    directory = "directory"
    events = "events"
    matching = "matching"


class Database(StrEnum):
    directory = "directory"
    events = "events"
    matching = "matching"
    gateway = "gateway"


class RoleOption(StrEnum):
    api = "api"
    worker = "worker"
    all = "all"


class Broker(StrEnum):
    tansu = "tansu"
    kafka = "kafka"


class TokenRole(StrEnum):
    admin = "admin"
    partner = "partner"
    collectivity = "collectivity"
    actor = "actor"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def serve(
    process: Annotated[Process, typer.Argument(help="directory, events, matching or gateway")],
    role: Annotated[
        RoleOption, typer.Option(help="api: REST; worker: consumers and relay; all: both")
    ] = RoleOption.all,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: MAILLAGE_<PROCESS>_PORT)")] = None,
) -> None:
    """Run one service (or the gateway) until SIGTERM."""
    from services.common.embedded import PortInUse
    from services.launch.runtime import ConfigurationError, WorkersFailed
    from services.launch.runtime import serve as run_process

    try:
        run_process(process.value, role.value, get_settings(), port)
    except (ConfigurationError, PortInUse) as exc:
        raise _fail(str(exc)) from exc
    except WorkersFailed as exc:
        raise _fail(str(exc), 1) from exc


@app.command()
def health(
    process: Annotated[Process, typer.Argument(help="directory, events, matching or gateway")],
    port: Annotated[int | None, typer.Option(help="HTTP port (default: MAILLAGE_<PROCESS>_PORT)")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 3.0,
) -> None:
    """Exit 0 when the local process answers ready on /readyz (container healthchecks)."""
    import httpx

    url = f"http://127.0.0.1:{port or get_settings().port_for(process.value)}/readyz"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise _fail(f"{url}: {exc.__class__.__name__}: {exc}", 1) from exc
    if response.status_code != 200:
        raise _fail(f"{url}: {response.status_code} {response.text[:200]}", 1)
    typer.echo(f"{process.value}: ready")


@app.command()
def dev(
    services: Annotated[bool, typer.Option(help="Start the services and gateway too")] = True,
    broker: Annotated[
        Broker | None, typer.Option(help="tansu (default, Python only) or kafka (Apache Kafka, needs Java)")
    ] = None,
) -> None:
    """Run the whole hub on embedded PostgreSQL and the embedded broker (what `make run` does)."""
    from services.launch.devstack import run_dev

    settings = get_settings()
    if broker is not None:
        settings = settings.model_copy(update={"dev_broker": broker.value})
    try:
        code = run_dev(settings, with_services=services)
    except ModuleNotFoundError as exc:  # a production image: no embedded components
        raise _fail(f"the embedded stack needs `pip install 'maillage[embedded]'` ({exc})") from exc
    raise typer.Exit(code)


@app.command()
def migrate(
    service: Annotated[list[Database] | None, typer.Argument(help="Default: every service and the gateway")] = None,
) -> None:
    """Create each service's database (and the gateway's) if missing and apply its migrations."""
    from services.common.settings import DATABASES
    from services.launch.runtime import prepare_databases

    chosen = tuple(s.value for s in service) if service else DATABASES
    applied = asyncio.run(prepare_databases(get_settings(), chosen))
    for name, files in applied.items():
        typer.echo(f"{name}: {len(files)} migration(s) applied" + (f" ({', '.join(files)})" if files else ""))


@app.command()
def topics() -> None:
    """Create the missing topics of the topic plan on the configured broker."""
    from services.launch.runtime import prepare_topics

    created = asyncio.run(prepare_topics(get_settings()))
    typer.echo(f"{len(created)} topic(s) created" + (f": {', '.join(created)}" if created else ""))


@app.command()
def init() -> None:
    """Prepare a fresh installation: databases, migrations and topics (compose's init job)."""
    migrate(None)
    topics()


@app.command()
def asyncapi(
    output: Annotated[str | None, typer.Option(help="Write to this file (default: print)")] = None,
) -> None:
    """The AsyncAPI 3 document of topics, keys and event types (deploy/asyncapi.yaml)."""
    from pathlib import Path

    from services.launch.asyncapi import render

    text = render()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@app.command()
def token(
    role: Annotated[TokenRole, typer.Option(help="admin, partner, collectivity or actor")],
    actor: Annotated[str | None, typer.Option(help="Actor id the token is bound to")] = None,
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes, e.g. directory:write")] = "",
    ttl: Annotated[str, typer.Option(help="Lifetime: 30m, 12h, 90d")] = "12h",
    subject: Annotated[str | None, typer.Option(help="Subject (sub claim)")] = None,
) -> None:
    """Mint a bearer token, recorded as a gateway credential (revocable); prints its id, then the token."""
    from gateway.auth import issue_credential
    from services.common.auth import Role
    from services.common.errors import MaillageError

    try:
        lifetime = parse_duration(ttl)
        row, minted = asyncio.run(
            _with_gateway_db(
                lambda conn: issue_credential(
                    get_settings(),
                    conn,
                    name=f"maillage token --role {role.value}" + (f" ({subject})" if subject else ""),
                    role=Role(role.value),
                    issued_by="cli:token",
                    actor_id=actor,
                    scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                    ttl=lifetime,
                    subject=subject,
                )
            )
        )
    except (MaillageError, ValueError) as exc:
        raise _fail(getattr(exc, "detail", str(exc))) from exc
    except (OSError, asyncpg.PostgresError) as exc:
        raise _fail(f"cannot record the token's credential in the gateway's database: {exc}") from exc
    typer.echo(
        f"credential {row['id']} ({row['role']}, expires {row['expires_at']:%Y-%m-%d %H:%M}; "
        f"`maillage credentials revoke {row['id']}` revokes it)",
        err=True,
    )
    typer.echo(minted)


@app.command()
def secrets(
    compose: Annotated[bool, typer.Option(help="Also the database passwords of docker-compose's .env")] = False,
) -> None:
    """Print fresh signing keys (and database passwords) for a new installation's environment."""
    from secrets import token_hex

    from services.common.auth import new_secret
    from services.common.settings import DATABASES

    kid = "k" + datetime.now(UTC).strftime("%Y%m%d")
    typer.echo(f"MAILLAGE_JWT_KEYS='{json.dumps({kid: new_secret()})}'")
    typer.echo(f"MAILLAGE_JWT_ACTIVE_KID={kid}")
    typer.echo(f"MAILLAGE_INTERNAL_KEY={new_secret()}")
    if compose:  # hex: safe inside the database URLs compose builds
        for name in ("POSTGRES", *(f"{database.upper()}_DB" for database in DATABASES)):
            typer.echo(f"{name}_PASSWORD={token_hex(24)}")


@app.command()
def replay(
    service: Annotated[Service, typer.Argument(help="Whose outbox to replay")],
    since: Annotated[str, typer.Option(help="ISO time (2026-11-20T08:00) or a duration ago (2h, 3d)")],
    topic: Annotated[str | None, typer.Option(help="Only this topic")] = None,
) -> None:
    """Publish again the events a service sent since a time (after a broker lost its data)."""
    from services.common.db import connect
    from services.common.outbox import replay as replay_outbox

    try:
        start = parse_since(since)
    except ValueError as exc:
        raise _fail(str(exc)) from exc

    async def _run() -> int:
        conn = await connect(get_settings().database_url_for(service.value))
        try:
            return await replay_outbox(conn, since=start, topic=topic)
        finally:
            await conn.close()

    count = asyncio.run(_run())
    typer.echo(
        f"{count} event(s) of {service.value} since {start.isoformat()} queued for "
        "publication; the service's relay (worker role) sends them in order"
    )


class ReplicaService(StrEnum):
    events = "events"
    matching = "matching"


@app.command()
def rebuild(
    service: Annotated[ReplicaService, typer.Argument(help="Whose actor replica to refill")],
    since: Annotated[
        str | None, typer.Option(help="Only actors changed since (ISO time or 2h, 3d); default: all")
    ] = None,
) -> None:
    """Refill a service's actor replica from the directory's snapshot API (newer versions only).

    Actors that were missing or older are applied as if their event had just arrived: matching
    matches them against open needs, events flags the events of archived organizers. The topic keeps
    the replica current afterwards.
    """
    import httpx

    from services.common.replica import rebuild as rebuild_replica
    from services.launch.registry import parts_of

    apply_actor = parts_of(service.value).apply_actor
    assert apply_actor is not None, f"{service.value} keeps an actor replica"

    settings = get_settings()
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    try:
        report = asyncio.run(rebuild_replica(settings, service.value, apply_actor, since=start))
    except (OSError, httpx.HTTPError) as exc:
        raise _fail(f"cannot reach the directory at {settings.directory_url} or the database: {exc}") from exc
    typer.echo(
        f"{report.read} actor(s) read from the directory, {report.applied} applied to the {service.value} replica; "
        f"snapshot watermark {report.watermark}"
    )


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str | None, typer.Option(help="Original topic (default: all)")] = None,
    limit: Annotated[int, typer.Option(help="At most this many messages")] = 100,
) -> None:
    """Show dead-lettered messages with their error."""
    from services.common.dlq import list_dead_letters

    letters = asyncio.run(list_dead_letters(get_settings(), topic=topic, limit=limit))
    for letter in letters:
        typer.echo(json.dumps(letter, ensure_ascii=False))
    typer.echo(f"{len(letters)} dead-lettered message(s)", err=True)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str | None, typer.Option(help="Original topic (default: all)")] = None,
) -> None:
    """Send dead-lettered messages back to their topic (once each), after fixing the cause."""
    from services.common.dlq import replay_dead_letters

    count = asyncio.run(replay_dead_letters(get_settings(), topic=topic))
    typer.echo(f"{count} message(s) sent back to their topic")


@import_app.command("actors")
def import_actors(
    path: Annotated[str, typer.Argument(help="CSV file (UTF-8, header row; see the README for columns)")],
    report: Annotated[str | None, typer.Option(help="Write the rejected rows as JSON lines here")] = None,
) -> None:
    """Import actors into the directory: streamed, every row validated, re-imports update."""
    import os

    from tqdm import tqdm

    from services.common.db import create_pool
    from services.directory.imports import import_stream

    size = os.path.getsize(path)

    async def _run() -> dict[str, object]:
        pool = await create_pool(get_settings().database_url_for("directory"), min_size=1, max_size=2)
        try:
            with (
                open(path, encoding="utf-8-sig", newline="") as handle,  # noqa: ASYNC230
                tqdm(total=size, unit="B", unit_scale=True, desc="actors", disable=None) as bar,
            ):

                async def lines() -> AsyncIterator[str]:
                    for line in handle:
                        bar.update(len(line.encode()))
                        yield line

                result = await import_stream(pool, lines())
        finally:
            await pool.close()
        return result.as_dict()

    outcome = asyncio.run(_run())
    rejected = outcome.pop("rejected")
    assert isinstance(rejected, list)
    for item in rejected[:20]:
        typer.echo(f"line {item['line']}: {item['reason']}", err=True)
    if report:
        with open(report, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in rejected)
    typer.echo(json.dumps(outcome))


async def _with_gateway_db(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    conn = await asyncpg.connect(get_settings().database_url_for("gateway"))
    try:
        return await work(conn)
    finally:
        await conn.close()


class MemberRoleOption(StrEnum):
    member = "member"
    admin = "admin"


@app.command()
def invite(
    actor: Annotated[str, typer.Option(help="The actor's id")],
    email: Annotated[str, typer.Option(help="The person's e-mail address")],
    name: Annotated[str, typer.Option(help="The person's name (kept when the address is already a person's)")],
    role: Annotated[MemberRoleOption, typer.Option(help="member, or admin (invites and removes members)")] = (
        MemberRoleOption.member
    ),
) -> None:
    """Make a person a member of an actor (the directory's), and e-mail the first sign-in link (the gateway's)."""
    import aiosmtplib
    import httpx

    from gateway import sessions
    from services.common.auth import Principal, Role, forwarded_headers

    settings = get_settings()
    headers = forwarded_headers(settings, Principal(subject="admin:cli", role=Role.ADMIN))
    directory = settings.url_for("directory")
    try:
        with httpx.Client(base_url=directory, headers=headers, timeout=10) as http:
            answer = http.post(f"/v1/actors/{actor}/members", json={"email": email, "name": name, "role": role.value})
            if answer.status_code != 201:
                raise _fail(f"the directory refused the invitation ({answer.status_code}): {answer.text[:500]}")
            actor_name = http.get(f"/v1/actors/{actor}").json()["name"]
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the directory at {directory}: {exc}") from exc
    member = answer.json()

    async def send(conn: asyncpg.Connection) -> str:
        return await sessions.invite(settings, conn, email=email, person=member["person"], actor_name=actor_name)

    try:
        url = asyncio.run(_with_gateway_db(send))
    except (OSError, asyncpg.PostgresError, aiosmtplib.SMTPException, ValueError) as exc:
        raise _fail(f"{email} is a member now, but the sign-in link was not sent: {exc}") from exc
    typer.echo(f"{member['person']['name']} <{email}> is {role.value} of {actor_name}; sign-in link sent", err=True)
    if not settings.email_enabled:
        typer.echo(url)


@app.command()
def erase(email: Annotated[str, typer.Argument(help="The person's e-mail address")]) -> None:
    """Erase a person (GDPR art. 17): its sessions revoked, its sign-in links deleted, the directory's person,
    memberships and claims deleted, its event registrations anonymised (the gateway's `erasePerson`)."""
    from graphql import GraphQLError

    from gateway import erasure
    from gateway.clients import ServiceClients
    from services.common.auth import Principal, Role
    from services.common.errors import MaillageError

    settings = get_settings()
    admin = Principal(subject="admin:cli", role=Role.ADMIN)

    async def run(conn: asyncpg.Connection) -> erasure.Erasure:
        clients = ServiceClients(settings)
        try:
            return await erasure.erase_person(settings, conn, clients, email, principal=admin)
        finally:
            await clients.aclose()

    try:
        done = asyncio.run(_with_gateway_db(run))
    except MaillageError as exc:
        raise _fail(exc.detail) from exc
    except GraphQLError as exc:  # a service refused or is down: what was done stays done, the next run finishes
        raise _fail(f"{exc.message}; nothing is lost: run `maillage erase` again to finish", 1) from exc
    except (OSError, asyncpg.PostgresError) as exc:
        raise _fail(f"cannot reach the gateway's database: {exc}; run `maillage erase` again to finish", 1) from exc
    typer.echo(f"erased {email}: {done.summary()}")


@credentials_app.command("issue")
def credentials_issue(
    name: Annotated[str, typer.Option(help="Who holds it: the partner app, the authority…")],
    role: Annotated[TokenRole, typer.Option(help="partner, collectivity, actor or admin")] = TokenRole.partner,
    actor: Annotated[str | None, typer.Option(help="Actor id (collectivity and actor roles)")] = None,
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes")] = "",
    ttl: Annotated[str, typer.Option(help="Lifetime: 90d, 365d")] = "365d",
    rate_limit: Annotated[int | None, typer.Option(help="Requests per minute (default: the gateway's)")] = None,
) -> None:
    """Issue a credential recorded by the gateway (revocable); prints its id, then its token (shown once)."""
    from gateway.auth import issue_credential
    from services.common.auth import Role
    from services.common.errors import MaillageError

    try:
        row, minted = asyncio.run(
            _with_gateway_db(
                lambda conn: issue_credential(
                    get_settings(),
                    conn,
                    name=name,
                    role=Role(role.value),
                    issued_by="cli",
                    actor_id=actor,
                    scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                    ttl=parse_duration(ttl),
                    rate_limit_per_minute=rate_limit,
                )
            )
        )
    except (MaillageError, ValueError) as exc:
        raise _fail(getattr(exc, "detail", str(exc))) from exc
    typer.echo(f"credential {row['id']} ({row['role']}, expires {row['expires_at']:%Y-%m-%d})", err=True)
    typer.echo(minted)


@credentials_app.command("revoke")
def credentials_revoke(credential_id: Annotated[str, typer.Argument(help="The credential's id (its jti)")]) -> None:
    """Revoke a credential: the gateway refuses its token on the next request."""
    import uuid

    from gateway.auth import revoke_credential

    try:
        wanted = uuid.UUID(credential_id)
    except ValueError as exc:
        raise _fail(f"{credential_id!r} is not a credential id") from exc
    row = asyncio.run(_with_gateway_db(lambda conn: revoke_credential(conn, wanted, revoked_by="cli")))
    if row is None:
        raise _fail(f"no credential {credential_id}", 1)
    typer.echo(f"revoked {row['id']} at {row['revoked_at']:%Y-%m-%d %H:%M:%S}")


@credentials_app.command("list")
def credentials_list(
    revoked: Annotated[bool, typer.Option(help="Include revoked credentials")] = False,
) -> None:
    """The credentials issued, newest first."""
    from gateway.auth import list_credentials

    rows = asyncio.run(_with_gateway_db(lambda conn: list_credentials(conn, include_revoked=revoked)))
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else f"until {row['expires_at']:%Y-%m-%d}"
        typer.echo(f"{row['id']}  {row['role']:<12} {row['name']:<30} {state}")


def parse_duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError(f"duration {text!r}: use a number and s, m, h or d (e.g. 12h)")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def parse_since(text: str) -> datetime:
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"--since {text!r}: give an ISO time or a duration like 2h") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[func-returns-value]
