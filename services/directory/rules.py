"""The directory's rules: who may do what to an actor, and what an edit, an archive or an import decides (no I/O)."""

from __future__ import annotations

import uuid
from enum import Enum

from pydantic import ValidationError

from services.common.auth import Principal, Role, ServiceIdentity
from services.common.errors import Conflict, Forbidden, Unauthenticated, ValidationFailed
from services.common.versions import stale_version
from services.directory.model import (
    ActorCreate,
    ActorOrigin,
    ActorPatch,
    ActorRead,
    ActorStatus,
    ActorUpdate,
    Contact,
    MemberRole,
)

WRITE_SCOPE = "directory:write"
# The fields a comparison of two versions of an actor ignores: they change with every write, not with the actor.
BOOKKEEPING = frozenset({"id", "version", "created_at", "updated_at", "status", "distance_km"})

Caller = Principal | ServiceIdentity | None


# --- who may do what ----------------------------------------------------------------------------------


def can_see_contact(caller: Caller, actor_id: str) -> bool:
    """The contact is personal data: admins, partners and the actor itself see it, and a service a route names."""
    if caller is None:
        return False
    if isinstance(caller, ServiceIdentity):
        return True  # only a service the route names gets here
    return caller.role in (Role.ADMIN, Role.PARTNER) or caller.acts_for(actor_id)


def require_creator(principal: Principal) -> None:
    """Registering (and importing) actors needs an admin, or a partner with the write scope."""
    if principal.is_admin or (principal.role == Role.PARTNER and principal.has_scope(WRITE_SCOPE)):
        return
    raise Forbidden(f"registering actors needs an admin, or a partner with the {WRITE_SCOPE} scope")


def require_editor(principal: Principal, actor_id: str) -> None:
    """An admin, a partner with the write scope, or the actor itself edits (and archives) an actor."""
    if principal.acts_for(actor_id):
        return
    if principal.role == Role.PARTNER and principal.has_scope(WRITE_SCOPE):
        return
    raise Forbidden("only an admin, a partner with the directory:write scope or the actor itself edits an actor")


def require_kind_kept(principal: Principal, current_kind: str, new_kind: str) -> None:
    """An actor editing itself cannot change its own kind (an association does not become a local authority)."""
    if principal.role == Role.ACTOR and new_kind != current_kind:
        raise Forbidden("an actor cannot change its own kind")


def require_snapshot_reader(caller: Caller) -> None:
    """The snapshot (every actor, for replicas) is for services, admins and partners."""
    if caller is None:
        raise Unauthenticated("missing credentials: the snapshot is for services, admins and partners")
    if isinstance(caller, Principal) and caller.role not in (Role.ADMIN, Role.PARTNER):
        raise Forbidden("the snapshot is for services, admins and partners")


# --- state rules --------------------------------------------------------------------------------------


def check_version(actor_id: str, expected: int | None, current: int) -> None:
    """An edit made on `expected` (None: the caller did not say) applies only to that version."""
    if expected is not None and current != expected:
        raise stale_version("actor", actor_id, expected, current)


def needs_archiving(actor: ActorRead) -> bool:
    """Archiving an archived actor changes nothing (and says nothing): it answers the actor as it is."""
    return actor.status is not ActorStatus.archived


def identifier_taken(column: str, value: str, holder_id: str) -> Conflict:
    """The conflict of an identifier (SIRET, RNA, register reference, source id) another actor holds."""
    return Conflict(
        f"{column} {value} already belongs to actor {holder_id}",
        field=column,
        rule="unique",
        existing_actor_id=holder_id,
    )


def identifier_raced(constraint: str | None) -> Conflict:
    """The conflict of a unique constraint a concurrent write won after `identifier_taken` was checked."""
    column = (constraint or "").removeprefix("actors_").removesuffix("_key")
    return Conflict(f"{column} already belongs to another actor", field=column, rule="unique")


# --- partial updates ----------------------------------------------------------------------------------


def patched(current: ActorRead, patch: ActorPatch) -> ActorUpdate:
    """The full replacement a patch makes of `current`: the fields given replace theirs, the others are kept.

    Nested values (contact, activities, location) are replaced whole, not merged. Raises `ValidationFailed`
    for an empty patch, and for a rule across fields the result breaks (naming the field the rule names).
    """
    if not patch.model_fields_set:
        raise ValidationFailed("give at least one field to change", field="body", rule="not_empty")
    values = current.model_dump(mode="json", include=set(ActorUpdate.model_fields))
    values.update(patch.model_dump(mode="json", include=patch.model_fields_set))
    try:
        return ActorUpdate.model_validate(values)
    except ValidationError as exc:
        raise invalid(exc) from exc


def invalid(exc: ValidationError) -> ValidationFailed:
    """A model's first validation error as the 422 a request body's would be (its field, rule and message)."""
    first = exc.errors()[0]
    parts = [str(part) for part in first["loc"]]
    ctx = first.get("ctx")
    if isinstance(ctx, dict) and isinstance(ctx.get("field"), str):
        parts.append(ctx["field"])  # a rule across fields names its field (services.common.rules.cross_field_error)
    field = ".".join(parts) or "body"
    message = str(first["msg"]).removeprefix("Value error, ")
    return ValidationFailed(f"{field}: {message}", field=field, rule=first["type"])


# --- imports ------------------------------------------------------------------------------------------


class ImportOutcome(Enum):
    """What an import row does to the actor its identifiers designate."""

    unchanged = "unchanged"  # same fields, still active: nothing written, nothing said
    updated = "updated"  # new fields: written, ActorUpdated
    reactivated = "reactivated"  # archived: written back as active (with the row's fields), ActorUpdated


def import_outcome(current: ActorRead, proposed: ActorRead) -> ImportOutcome:
    """A row seen again in a source is the actor as the source has it now: a re-import revives an archived one."""
    if current.status is ActorStatus.archived:
        return ImportOutcome.reactivated
    if proposed.model_dump(mode="json", exclude=set(BOOKKEEPING)) == current.model_dump(
        mode="json", exclude=set(BOOKKEEPING)
    ):
        return ImportOutcome.unchanged
    return ImportOutcome.updated


IDENTIFIERS = ("source_id", "siret", "rna", "local_register")


def identity(actor: ActorCreate) -> list[tuple[str, str]]:
    """The (identifier, value) pairs an import row designates its actor by, in the order they are trusted."""
    return [(column, getattr(actor, column)) for column in IDENTIFIERS if getattr(actor, column)]


# --- persons, memberships and claims ------------------------------------------------------------------

PERSON_SUBJECT = "person:"  # the subject of a console session: the person signed in (gateway/console/signin.py)
# Staff vouched for these actors (registered or imported them), so their registered contact address may claim
# them; a self-registered actor's contact is only what its registrant typed. Partners' registrations are not
# staff's either.
CLAIMABLE_ORIGINS = (ActorOrigin.staff, ActorOrigin.imported)


def origin_of(principal: Principal) -> ActorOrigin:
    """Who registers an actor says where it comes from (`require_creator` let only these two through)."""
    return ActorOrigin.staff if principal.is_admin else ActorOrigin.partner


def require_gateway(caller: Caller) -> None:
    """Persons are looked up, and claims made, by the gateway signing people in, with its service identity only."""
    if caller is None:
        raise Unauthenticated("missing credentials: this route answers the gateway's service identity only")
    if not (isinstance(caller, ServiceIdentity) and caller.service == "gateway"):
        raise Forbidden("this route answers the gateway's service identity only")


def person_of(principal: Principal) -> uuid.UUID | None:
    """The person a caller is, when it is a signed-in person (a console session's subject `person:<id>`)."""
    if not principal.subject.startswith(PERSON_SUBJECT):
        return None
    try:
        return uuid.UUID(principal.subject.removeprefix(PERSON_SUBJECT))
    except ValueError:
        return None


def require_members_manager(principal: Principal, actor_id: str, own_role: str | None) -> None:
    """An actor's members are managed by Maillage's admins and by the actor's own admin members (`own_role`: the
    caller's role in that actor, when it is a person acting for it)."""
    if principal.is_admin:
        return
    if principal.acts_for(actor_id) and own_role == MemberRole.admin:
        return
    raise Forbidden("only an admin of Maillage or an admin member of this actor manages its members")


def contact_email(contact: Contact | None) -> str | None:
    return contact.email.lower() if contact is not None and contact.email else None


def contact_address_changed(before: Contact | None, after: Contact | None) -> bool:
    """A claim was made from the address then registered: a new address voids the claims still pending."""
    return contact_email(before) != contact_email(after)


def claim_still_valid(status: str, actor_status: str, contact: str | None, claimed_from: str) -> bool:
    """A claim is confirmed only while pending, its actor active and its contact still the address claimed from."""
    return (
        status == "pending"
        and actor_status == ActorStatus.active
        and contact is not None
        and contact.lower() == claimed_from.lower()
    )
