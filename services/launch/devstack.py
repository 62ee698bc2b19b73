"""`maillage dev`: the whole hub on one machine — embedded PostgreSQL and broker, every service, the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import httpx

from services.common.apache_kafka import KAFKA_VERSION, ApacheKafkaBroker
from services.common.auth import PRINCIPAL_HEADER, Principal, Role, mint_internal, new_secret
from services.common.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    PortInUse,
    die_with_parent,
    port_is_free,
    stop_process,
)
from services.common.settings import PROCESSES, SERVICES, Settings
from services.launch.runtime import prepare_databases, prepare_topics

READY_LINE = "Maillage is ready"
ADMIN_TOKEN_TTL = timedelta(hours=12)
DEV_ADMIN = Principal(subject="admin:dev", role=Role.ADMIN)
# The demo members `make run` signs in: one of a local authority, one of an actor (addresses of no one).
DEMO_MEMBERS = (
    ("camille.martin@collectivite.example", "Camille Martin"),
    ("sami.benali@acteur.example", "Sami Benali"),
)


class ForwardedIdentity(httpx.Auth):
    """An operator's call straight to a service, signed as the gateway forwards a caller (re-signed at half its
    lifetime): services accept nothing else, and only the machine holding the internal key can sign it."""

    def __init__(self, settings: Settings, principal: Principal = DEV_ADMIN) -> None:
        self.settings = settings
        self.principal = principal
        self.token = ""
        self.renew_at = 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if time.monotonic() >= self.renew_at:
            self.token = mint_internal(self.settings, self.principal)
            self.renew_at = time.monotonic() + self.settings.internal_token_ttl_s / 2
        request.headers[PRINCIPAL_HEADER] = self.token
        yield request


def load_dev_secrets(home: Path) -> dict[str, str]:
    """The embedded stack's keys, created once under `home` so that tokens survive restarts."""
    path = home / "dev.env"
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip().strip("'")
    if not values.get("MAILLAGE_JWT_KEYS") or not values.get("MAILLAGE_INTERNAL_KEY"):
        values = {
            "MAILLAGE_JWT_KEYS": json.dumps({"dev-1": new_secret()}),
            "MAILLAGE_JWT_ACTIVE_KID": "dev-1",
            "MAILLAGE_INTERNAL_KEY": new_secret(),
        }
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Keys of the embedded stack (`maillage dev`), generated once; never use in production.\n"
            + "".join(f"{name}='{value}'\n" for name, value in values.items())
        )
        path.chmod(0o600)
    return values


@dataclass
class DevStack:
    """Starts and stops the embedded stack; used by `make run` and by the end-to-end tests."""

    settings: Settings
    out: TextIO = sys.stdout
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | ApacheKafkaBroker | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    admin_credential: tuple[str, str] | None = None  # (its id, its token): recorded by the gateway, revocable
    demo_links: list[tuple[str, str]] = field(default_factory=list)  # the demo members' sign-in links

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def check_ports(self, embedded_pg: bool, embedded_kafka: bool) -> None:
        s = self.settings
        wanted = [(s.port_for(p), f"{p} HTTP", f"MAILLAGE_{p.upper()}_PORT") for p in PROCESSES]
        wanted.append((s.gateway_metrics_port, "gateway metrics", "MAILLAGE_GATEWAY_METRICS_PORT"))
        if embedded_pg:
            wanted.append((s.postgres_port, "embedded PostgreSQL", "MAILLAGE_POSTGRES_PORT"))
        if embedded_kafka:
            wanted.append((s.kafka_port, "embedded Kafka broker", "MAILLAGE_KAFKA_PORT"))
        for port, what, variable in wanted:
            if not port_is_free(s.host, port):
                raise PortInUse(port, what, variable)

    def start(self, *, with_services: bool = True, timeout_s: float = 60.0) -> None:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        embedded_pg = "MAILLAGE_DATABASE_URL" not in os.environ
        embedded_kafka = "MAILLAGE_KAFKA_BOOTSTRAP" not in os.environ
        self.check_ports(embedded_pg, embedded_kafka)
        secrets = load_dev_secrets(self.home)
        updates: dict[str, object] = {
            "jwt_keys": secrets["MAILLAGE_JWT_KEYS"],
            "jwt_active_kid": secrets["MAILLAGE_JWT_ACTIVE_KID"],
            "internal_key": secrets["MAILLAGE_INTERNAL_KEY"],
        }
        if embedded_pg:
            self.postgres = EmbeddedPostgres(self.home / "postgres", self.settings.postgres_port, self.settings.host)
            self.say(f"starting PostgreSQL 18 on port {self.settings.postgres_port} (data in {self.postgres.data_dir})")
            self.postgres.start()
            updates["database_url"] = self.postgres.url
        if embedded_kafka and self.settings.dev_broker == "kafka":
            s = self.settings
            later = [s.port_for(p) for p in PROCESSES] + [s.gateway_metrics_port, s.postgres_port]
            self.broker = ApacheKafkaBroker(self.home / "kafka", s.kafka_port, host=s.host, reserved_ports=later)
            self.say(
                f"starting Apache Kafka {KAFKA_VERSION} (KRaft) on port {self.settings.kafka_port}"
                f" (data in {self.broker.home}, log in {self.broker.log_path})"
            )
            self.broker.start()
            updates["kafka_bootstrap"] = self.broker.bootstrap
        elif embedded_kafka:
            self.broker = EmbeddedBroker(
                self.settings.kafka_port, self.settings.host, self.home / "logs" / "broker.log"
            )
            self.say(f"starting the Tansu broker on port {self.settings.kafka_port} (memory storage)")
            self.broker.start()
            updates["kafka_bootstrap"] = self.broker.bootstrap
            if "kafka_idempotent_producer" not in self.settings.model_fields_set:
                updates["kafka_idempotent_producer"] = False  # Tansu refuses idempotent producers
        for service in SERVICES:
            updates[f"{service}_url"] = f"http://{self.settings.host}:{self.settings.port_for(service)}"
        self.settings = self.settings.model_copy(update=updates)
        asyncio.run(self._prepare())
        self.env = self.child_env()
        if with_services:
            for process in PROCESSES:
                self.spawn(process)
            self.wait_ready(timeout_s)
            for what, load in (("needs", self.load_demo_needs), ("events", self.load_demo_events)):
                try:
                    load()
                except (httpx.HTTPError, KeyError, ValueError) as exc:  # demo data must not stop the hub
                    self.say(f"demo {what} not loaded: {exc!r}")
        self.say(self.banner(time.monotonic() - started))

    async def _prepare(self) -> None:
        await prepare_databases(self.settings)
        created = await prepare_topics(self.settings)
        if created:
            self.say(f"created {len(created)} topics from the topic plan")
        await self._load_demo_data()
        self.admin_credential = await self.issue_admin_credential()
        try:
            self.demo_links = await self.demo_sign_in_links()
        except (OSError, asyncpg.PostgresError, ValueError) as exc:  # demo data must not stop the hub
            self.say(f"demo members not made: {exc!r}")

    @property
    def console_url(self) -> str:
        s = self.settings
        return s.public_url if "public_url" in s.model_fields_set else f"http://{s.host}:{s.gateway_port}"

    async def demo_sign_in_links(self) -> list[tuple[str, str]]:
        """The demo members (a person of a demo authority, one of a demo actor nearby) and a one-time sign-in link
        for each (made here, not e-mailed: the stack has no mail server), as (who, link)."""
        from gateway.sessions import create_link  # the stack runs the gateway; the services never import it
        from services.common.db import create_pool
        from services.directory import service
        from services.directory.model import MemberInvite, MemberRole

        pool = await create_pool(self.settings.database_url_for("directory"), min_size=1, max_size=2)
        try:
            authority = await pool.fetchrow(
                """SELECT id, name, commune_code FROM actors WHERE kind = 'local_authority' AND status = 'active'
                   ORDER BY lower(name), id LIMIT 1"""
            )
            if authority is None:
                return []
            actor = await pool.fetchrow(
                """SELECT id, name FROM actors WHERE kind <> 'local_authority' AND status = 'active'
                   ORDER BY commune_code = $1 DESC, lower(name), id LIMIT 1""",
                authority["commune_code"],
            )
            members = [(authority, DEMO_MEMBERS[0])] + ([(actor, DEMO_MEMBERS[1])] if actor else [])
            made = []
            for where, (email, name) in members:
                member = await service.invite_member(
                    pool, DEV_ADMIN, str(where["id"]), MemberInvite(email=email, name=name, role=MemberRole.admin)
                )
                made.append((f"{name} <{email}>, {where['name']}", member.person.id, email))
        finally:
            await pool.close()
        links = []
        linking = self.settings.model_copy(update={"public_url": self.console_url})
        conn = await asyncpg.connect(self.settings.database_url_for("gateway"))
        try:
            for who, person_id, email in made:
                url = await create_link(linking, conn, email, person_id=person_id, claim_ids=[], requested_from=None)
                links.append((who, url))
        finally:
            await conn.close()
        return links

    async def issue_admin_credential(self) -> tuple[str, str]:
        """The admin token the banner prints, recorded as a gateway credential so that it can be revoked."""
        from gateway.auth import issue_credential  # the stack runs the gateway; the services never import it

        conn = await asyncpg.connect(self.settings.database_url_for("gateway"))
        try:
            row, token = await issue_credential(
                self.settings,
                conn,
                name="maillage dev admin",
                role=Role.ADMIN,
                issued_by="maillage dev",
                subject=DEV_ADMIN.subject,
                ttl=ADMIN_TOKEN_TTL,
            )
        finally:
            await conn.close()
        return str(row["id"]), token

    async def _load_demo_data(self) -> None:
        """Import the demo actors (idempotent: a second run finds them unchanged)."""
        from services.common.db import create_pool
        from services.directory.demo import DEMO_FILE
        from services.directory.imports import import_stream, read_csv_lines

        pool = await create_pool(self.settings.database_url_for("directory"), min_size=1, max_size=2)
        try:

            async def lines() -> AsyncIterator[str]:
                for line in read_csv_lines(str(DEMO_FILE)):
                    yield line

            report = await import_stream(pool, lines())
        finally:
            await pool.close()
        self.say(
            f"demo actors: {report.created} created, {report.updated} updated, {report.unchanged} unchanged"
            + (f", {report.rejected_count} rejected: {report.rejected[:3]}" if report.rejected_count else "")
        )

    def load_demo_needs(self) -> None:
        """Publish the demo needs through the matching API, once (a need already there is kept)."""
        from services.matching.demo import DEMO_NEEDS

        matching = self.settings.url_for("matching")

        def titles(http: httpx.Client, owner_id: str) -> set[str]:
            items = http.get(f"{matching}/v1/needs", params={"owner_id": owner_id, "first": 100}).json()
            return {need["title"] for need in items["items"]}

        self._publish_demo(
            "needs",
            DEMO_NEEDS,
            f"{matching}/v1/needs",
            titles,
            lambda demo, owner_id, owner: {**demo.body(owner["location"]), "owner_id": owner_id},
        )

    def load_demo_events(self) -> None:
        """Publish the demo events through the events API, once (an organizer's event of the same title is kept)."""
        from services.events.demo import DEMO_EVENTS

        events = self.settings.url_for("events")

        def titles(http: httpx.Client, owner_id: str) -> set[str]:
            mine = http.get(f"{events}/v1/actors/{owner_id}/events", params={"first": 100}).json()
            return {edge["node"]["title"] for edge in mine["edges"]}

        self._publish_demo(
            "events",
            DEMO_EVENTS,
            f"{events}/v1/events",
            titles,
            lambda demo, owner_id, owner: demo.body(owner_id, owner["location"]),
        )

    def _publish_demo(
        self,
        what: str,
        items: Sequence[Any],
        url: str,
        titles_of: Callable[[httpx.Client, str], set[str]],
        body_of: Callable[[Any, str, dict[str, Any]], dict[str, Any]],
        timeout_s: float = 30.0,
    ) -> None:
        """POST each demo item of a demo authority (by its commune) unless that authority has one of that title."""
        published = kept = 0
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10, auth=self.operator()) as http:
            authorities = self._demo_authorities(http, self.settings.url_for("directory"))
            titles: dict[str, set[str]] = {}
            for demo in items:
                owner = authorities.get(demo.authority)
                if owner is None:
                    continue
                owner_id = str(owner["id"])
                if owner_id not in titles:
                    titles[owner_id] = titles_of(http, owner_id)
                if demo.title in titles[owner_id]:
                    kept += 1
                    continue
                body = body_of(demo, owner_id, owner)
                while True:  # the service's replica may still be reading the demo actors
                    response = http.post(url, json=body)
                    if response.status_code != 422 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                if response.status_code == 201:
                    published += 1
                else:
                    self.say(f"demo {what} {demo.title!r} not published: {response.status_code} {response.text[:200]}")
        self.say(f"demo {what}: {published} published, {kept} already there")

    @staticmethod
    def _demo_authorities(http: httpx.Client, directory: str) -> dict[str, dict[str, Any]]:
        """The demo local authorities by the INSEE code of their commune."""
        authorities: dict[str, dict[str, Any]] = {}
        page = http.get(f"{directory}/v1/actors", params={"kinds": "local_authority", "first": 100}).json()
        for edge in page["edges"]:
            authorities.setdefault(edge["node"]["commune_code"], edge["node"])
        return authorities

    def child_env(self) -> dict[str, str]:
        s = self.settings
        # The caller's own settings (`MAILLAGE_MATCH_K=10 maillage dev`) reach every process; the stack's
        # addresses, ports and keys below replace any inherited value.
        env = dict(os.environ)
        env.update(
            {
                "MAILLAGE_HOME": str(self.home),
                "MAILLAGE_DATABASE_URL": s.database_url,
                "MAILLAGE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                "MAILLAGE_JWT_KEYS": s.jwt_keys,
                "MAILLAGE_JWT_ACTIVE_KID": s.jwt_active_kid,
                "MAILLAGE_INTERNAL_KEY": s.internal_key,
                "MAILLAGE_HOST": s.host,
                "MAILLAGE_LOG_LEVEL": s.log_level,
            }
        )
        # On one machine, partners' test receivers are local and there is no mail server: webhooks may
        # reach loopback, and e-mails are recorded in the matching database unless SMTP is configured.
        env.setdefault("MAILLAGE_WEBHOOK_ALLOW_PRIVATE", "true")
        env["MAILLAGE_KAFKA_IDEMPOTENT_PRODUCER"] = "true" if s.kafka_idempotent_producer else "false"
        env.setdefault("MAILLAGE_EMAIL_ENABLED", "true" if "MAILLAGE_SMTP_HOST" in env else "false")
        # The console is served over plain http://127.0.0.1 here: its cookies cannot require HTTPS.
        env.setdefault("MAILLAGE_CONSOLE_SECURE_COOKIES", "false")
        for process in PROCESSES:
            env[f"MAILLAGE_{process.upper()}_PORT"] = str(s.port_for(process))
        env["MAILLAGE_GATEWAY_METRICS_PORT"] = str(s.gateway_metrics_port)
        # Links in e-mails lead to this gateway unless the caller named a public address.
        if "public_url" not in s.model_fields_set:
            env["MAILLAGE_PUBLIC_URL"] = f"http://{s.host}:{s.gateway_port}"
        for service in SERVICES:
            env[f"MAILLAGE_{service.upper()}_URL"] = s.url_for(service)
        return env

    def spawn(self, process: str) -> None:
        command = [sys.executable, "-m", "services.launch.cli", "serve", process]
        if process != "gateway":
            command += ["--role", "all"]
        log = open(self.home / "logs" / f"{process}.log", "ab")  # noqa: SIM115 - child owns it
        self.children[process] = subprocess.Popen(
            command,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = set(self.children)
        with httpx.Client(timeout=1.0) as client:
            while waiting:
                for process in sorted(waiting):
                    child = self.children[process]
                    if child.poll() is not None:
                        raise RuntimeError(
                            f"{process} exited with code {child.returncode} while starting; "
                            f"see {self.home / 'logs' / (process + '.log')}:\n{self.log_tail(process)}"
                        )
                    url = f"http://{self.settings.host}:{self.settings.port_for(process)}/readyz"
                    try:
                        if client.get(url).status_code == 200:
                            waiting.discard(process)
                    except httpx.HTTPError:
                        pass
                if waiting and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout_s:.0f} s: {', '.join(sorted(waiting))}")
                if waiting:
                    time.sleep(0.1)

    def log_tail(self, process: str, lines: int = 20) -> str:
        path = self.home / "logs" / f"{process}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def admin_token(self) -> str:
        """The admin's bearer token for the gateway (services refuse it: see `operator`)."""
        if self.admin_credential is None:
            raise RuntimeError("the stack is not started: no admin credential yet")
        return self.admin_credential[1]

    def operator(self, principal: Principal = DEV_ADMIN) -> ForwardedIdentity:
        """httpx auth for calls straight to a service (demo data, benchmarks), as `principal` (the admin)."""
        return ForwardedIdentity(self.settings, principal)

    def banner(self, elapsed_s: float) -> str:
        s = self.settings
        admin_id = self.admin_credential[0] if self.admin_credential else "(none)"
        lines = [
            "",
            f"{READY_LINE} in {elapsed_s:.1f} s",
            f"  GraphQL      http://{s.host}:{s.gateway_port}/graphql",
            f"  metrics      http://{s.host}:{s.gateway_metrics_port}/metrics (the gateway's; services' on their port)",
        ]
        lines += [f"  {svc:<12} {s.url_for(svc)}/docs" for svc in SERVICES if self.children]
        lines += [
            f"  PostgreSQL   {s.database_url}",
            f"  Kafka        {s.kafka_bootstrap} ({self.broker_name()})",
            f"  logs         {self.home / 'logs'}",
            "",
            f"Admin token (12 h, credential {admin_id}: `maillage credentials revoke {admin_id}` revokes it; "
            "`maillage token --role admin` mints more):",
            self.admin_token(),
            "",
            f"Console      {self.console_url}/",
        ]
        if self.demo_links:
            lines.append(
                "One-time sign-in links of the demo members (15 min, once; more from /connexion, which with e-mail "
                f"off writes them to {self.home / 'logs' / 'gateway.log'}):"
            )
            lines += [f"  {who}\n    {url}" for who, url in self.demo_links]
        lines += [
            "",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def broker_name(self) -> str:
        if isinstance(self.broker, ApacheKafkaBroker):
            return f"Apache Kafka {KAFKA_VERSION}"
        if isinstance(self.broker, EmbeddedBroker):
            return "Tansu, memory storage"
        return "external"

    def watch(self, stop: list[bool]) -> int:
        """Block until asked to stop or a child dies; return the exit code."""
        while not stop:
            for process, child in self.children.items():
                if child.poll() is not None:
                    self.say(f"{process} exited with code {child.returncode}; stopping.\n{self.log_tail(process)}")
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """Stop the services first (they commit), then the broker and PostgreSQL."""
        for child in self.children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in self.children.values():
            stop_process(child, signal.SIGTERM, timeout_s=25)
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def run_dev(settings: Settings, *, with_services: bool = True) -> int:
    stack = DevStack(settings)
    stop: list[bool] = []

    def _request_stop(signum: int, _frame: object) -> None:
        stop.append(True)

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        stack.start(with_services=with_services)
        return stack.watch(stop)
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        stack.say("stopping…")
        stack.stop()
        stack.say("stopped.")
