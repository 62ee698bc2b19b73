"""Erasing a person (GDPR art. 17) everywhere at once: its sessions and sign-in links here, then the directory's
person, memberships and claims, then the events service's registrations; one implementation for the GraphQL
mutation (`erasePerson`) and the CLI (`maillage erase`).

Each step is idempotent and keyed so that running the whole again finishes what a failure interrupted:

1. the directory is asked who the address is (its person's id);
2. here, every open session of that person is revoked (any actor: a credential whose subject is `person:<id>`, so
   that every replica refuses it on the next request and ends its open connections and streams), and every sign-in
   link of the address or the person is deleted (its rate-limit rows too);
3. the directory deletes the person, its memberships and its claims;
4. step 2 again, for a session or a link made while step 3 ran;
5. the events service anonymises the registrations made with the address.

Why this order: the directory is the only place that knows which person an address is, and the sessions name the
person, not the address. Were the directory erased first and the gateway's step then failed, a retry could no longer
find the sessions to revoke. Its own steps done before, a retry after a failure of the directory finds the person
again; a retry after a failure of the events service finds nothing left here nor in the directory (zeros) and does
the events' part, which needs the address only. After step 3 no link sent before can sign in: signing in looks the
person up again, and the claims made from the address are gone (a link asked for later is a new sign-up: the
address may still be an actor's registered contact, which is the actor's data).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import asyncpg

from gateway.clients import ServiceClients
from gateway.sessions import PERSON_SUBJECT, address_key
from services.common.auth import Principal, Role
from services.common.errors import ValidationFailed
from services.common.rules import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from services.common.settings import Settings

logger = logging.getLogger("maillage.gateway.erasure")

ADDRESS = re.compile(EMAIL_PATTERN)
REVOKED_BY = "erasure"


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed (zeros: nothing was left of the address)."""

    persons_deleted: int = 0
    memberships_deleted: int = 0
    claims_deleted: int = 0
    registrations_anonymised: int = 0
    sessions_revoked: int = 0
    sign_in_links_deleted: int = 0

    def summary(self) -> str:
        """One line for an operator: what each count counts, and the count."""
        counts = (
            ("persons deleted", self.persons_deleted),
            ("memberships deleted", self.memberships_deleted),
            ("claims deleted", self.claims_deleted),
            ("registrations anonymised", self.registrations_anonymised),
            ("sessions revoked", self.sessions_revoked),
            ("sign-in links deleted", self.sign_in_links_deleted),
        )
        return ", ".join(f"{label}: {count}" for label, count in counts)


def erasure_address(text: str) -> str:
    """The address to erase as every store compares it (trimmed, lower-cased); `ValidationFailed` naming the field
    `email` and its rule otherwise."""
    address = text.strip()
    if not 0 < len(address) <= EMAIL_MAX_LENGTH:
        raise ValidationFailed(f"email: 1 to {EMAIL_MAX_LENGTH} characters", field="email", rule="length")
    if not address.isprintable() or ADDRESS.fullmatch(address) is None:
        raise ValidationFailed("email: an e-mail address such as nom@domaine.fr", field="email", rule="format")
    return address.lower()


def person_subjects(person_ids: Iterable[str | uuid.UUID]) -> list[str]:
    """The credentials' subjects of these persons' sessions (`person:<id>`), each once, in a stable order."""
    return sorted({f"{PERSON_SUBJECT}{uuid.UUID(str(person_id))}" for person_id in person_ids})


async def erase_person(
    settings: Settings,
    pool: asyncpg.Pool | asyncpg.Connection,
    clients: ServiceClients,
    email: str,
    *,
    principal: Principal,
    forget: Callable[[uuid.UUID], None] | None = None,
) -> Erasure:
    """Erase the person of an address and everything kept of it (admins; see the module for the order); `forget` is
    told of each session revoked (a replica's credential cache, at once: the others hear it from PostgreSQL)."""
    principal.require_role(Role.ADMIN)
    address = erasure_address(email)
    found = await clients.directory.lookup_person(address)
    person_ids = [found["person"]["id"]] if found.get("person") else []
    # Here first, while the directory still says who the address is (the module says why this order).
    sessions, links = await forget_sign_in(settings, pool, address, person_ids, forget)
    directory = await clients.directory.erase_person(address, principal)
    late_sessions, late_links = await forget_sign_in(settings, pool, address, person_ids, forget)
    events = await clients.events.erase_person(address, principal)  # by address: a retry needs nothing else
    done = Erasure(
        persons_deleted=directory.get("persons_deleted", 0),
        memberships_deleted=directory.get("memberships_deleted", 0),
        claims_deleted=directory.get("claims_deleted", 0),
        registrations_anonymised=events.get("registrations_anonymised", 0),
        sessions_revoked=sessions + late_sessions,
        sign_in_links_deleted=links + late_links,
    )
    # The address is not logged: the log would keep what was just erased.
    logger.info("erasure by %s: %s", principal.subject, done.summary())
    return done


async def forget_sign_in(
    settings: Settings,
    pool: asyncpg.Pool | asyncpg.Connection,
    address: str,
    person_ids: list[str],
    forget: Callable[[uuid.UUID], None] | None,
) -> tuple[int, int]:
    """Revoke the sessions of the persons (and of any person a link of the address named) and delete the address's
    sign-in links and requests: how many sessions were revoked and links deleted.

    No transaction: each statement is idempotent on its own, and one that failed is done by the next run.
    """
    # A link remembers the person it was sent to: sessions are found even when the directory already forgot the
    # address (a person erased through the directory's REST API alone, before this operation existed).
    remembered = await pool.fetch(
        "SELECT DISTINCT person_id FROM sign_in_links WHERE lower(email) = $1 AND person_id IS NOT NULL", address
    )
    persons = sorted({uuid.UUID(str(person_id)) for person_id in [*person_ids, *(r["person_id"] for r in remembered)]})
    subjects = person_subjects(persons)
    # The one UPDATE counts each session once, whoever else revokes at the same time; its trigger tells every
    # replica (gateway/migrations/0002), which refuses the credential and ends its open connections and streams.
    revoked = await pool.fetch(
        """UPDATE credentials SET revoked_at = now(), revoked_by = $2
           WHERE subject = ANY($1::text[]) AND revoked_at IS NULL RETURNING id""",
        subjects,
        REVOKED_BY,
    )
    if forget is not None:
        for row in revoked:
            forget(row["id"])
    # The revoked credentials stay (they record the revocation); their idle-time rows name the person: gone.
    await pool.execute("DELETE FROM console_sessions WHERE person_id = ANY($1::uuid[])", persons)
    # Used links too: they hold the address as well (until the daily purge).
    links = await pool.fetch(
        "DELETE FROM sign_in_links WHERE lower(email) = $1 OR person_id = ANY($2::uuid[]) RETURNING id",
        address,
        persons,
    )
    await pool.execute("DELETE FROM sign_in_requests WHERE address_hash = $1", address_key(settings, address))
    return len(revoked), len(links)
