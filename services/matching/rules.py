"""The matching workflow's rules as plain functions on typed values (no I/O): who may do what, need and match states.

The use cases (`service`) load the records, ask these functions, then write; a refusal is raised here as the
service's error, with the message its HTTP answer carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import ValidationError

from services.common import versions
from services.common.auth import Principal, Role
from services.common.errors import Conflict, Forbidden, ValidationFailed
from services.matching.model import (
    EndpointStatus,
    MatchStatus,
    NeedPatch,
    NeedRead,
    NeedStatus,
    NeedUpdate,
    ReplicaStatus,
)
from services.matching.scoring import ActorProfile, Result

AUTHORITY_KIND = "local_authority"  # the only actor kind that publishes needs
# An actor that may answer a need, its score and the reasons (as stored with the match).
Scored = tuple[ActorProfile, float, list[dict[str, object]]]
NEED_MATCHES_ARE_PRIVATE = "a need's matches are for its owner, partners and admins"
ACTOR_MATCHES_ARE_PRIVATE = "an actor's matches are for itself, partners and admins"
MATCH_IS_PRIVATE = "a match is for its actor, the need's owner, partners and admins"

# A match still waiting for its need's decision: withdrawn when the need closes, and open to the actor's answer.
PENDING = frozenset({MatchStatus.proposed, MatchStatus.notified, MatchStatus.viewed, MatchStatus.interested})
# Not answered by its actor: withdrawn when an edit of its need leaves the actor out (an answer stays, for the
# need's owner to weigh).
UNANSWERED = frozenset({MatchStatus.proposed, MatchStatus.notified, MatchStatus.viewed})
# Not yet seen by its actor: viewing it marks it viewed (viewing anything else changes nothing).
UNSEEN = frozenset({MatchStatus.proposed, MatchStatus.notified})
# The actors that said yes: they count against `match_max_interested`.
SAID_YES = frozenset({MatchStatus.interested, MatchStatus.selected})
RESPONSES = frozenset({MatchStatus.interested, MatchStatus.declined})


# --- who may do what ----------------------------------------------------------------------------------------


def publishing_owner(principal: Principal, asked_owner_id: str | None) -> str:
    """The local authority a need is published for: the caller's own, or the one an admin names."""
    if principal.role == Role.COLLECTIVITY:
        if asked_owner_id not in (None, principal.actor_id):
            raise Forbidden("a local authority publishes its own needs only")
        return str(principal.actor_id)
    if principal.is_admin:
        if asked_owner_id is None:
            raise ValidationFailed(
                "owner_id: an admin names the publishing local authority", field="owner_id", rule="required"
            )
        return asked_owner_id
    raise Forbidden("only a local authority (collectivity role) or an admin publishes needs")


def check_publisher(owner_id: str, kind: str | None, status: str | None) -> None:
    """The replica's actor `owner_id` (kind and status, None when unknown) must be an active local authority."""
    if kind != AUTHORITY_KIND or status != ReplicaStatus.active:
        raise ValidationFailed(
            f"owner_id: {owner_id} is not an active local authority of the directory", field="owner_id", rule="exists"
        )


def require_owner(principal: Principal, owner_id: str) -> None:
    """Editing, closing a need and selecting among its matches are for its owner (or an admin)."""
    if principal.is_admin or (principal.role == Role.COLLECTIVITY and principal.acts_for(owner_id)):
        return
    raise Forbidden("only the local authority that owns this need (or an admin) may do this")


def require_matched_actor(principal: Principal, actor_id: str, doing: str) -> None:
    """Viewing and answering a match are for its actor (or an admin acting for it); `doing`: "responds to"…"""
    if not principal.acts_for(actor_id):
        raise Forbidden(f"only the matched actor {doing} its match")


def can_read_need_matches(principal: Principal, owner_id: str) -> bool:
    return principal.role in (Role.ADMIN, Role.PARTNER) or principal.acts_for(owner_id)


def can_read_actor_matches(principal: Principal, actor_id: str) -> bool:
    return principal.role in (Role.ADMIN, Role.PARTNER) or principal.acts_for(actor_id)


def can_read_match(principal: Principal, owner_id: str, actor_id: str) -> bool:
    """A match is read by the need's readers and by its own actor."""
    return can_read_need_matches(principal, owner_id) or principal.acts_for(actor_id)


def require_partner(principal: Principal) -> None:
    if principal.role not in (Role.ADMIN, Role.PARTNER):
        raise Forbidden("webhooks are for partners and admins")


def sees_endpoint(principal: Principal, owner: str) -> bool:
    """A webhook endpoint is its registering partner's (any partner's for an admin); others do not see it."""
    return principal.is_admin or owner == principal.subject


def endpoint_status(enabled: bool | None) -> EndpointStatus | None:
    """What an edit's `enabled` makes of an endpoint: re-enabled, paused, or unchanged (None)."""
    if enabled is None:
        return None
    return EndpointStatus.active if enabled else EndpointStatus.disabled


# --- the need's lifecycle ---------------------------------------------------------------------------------


def is_open(status: NeedStatus, deadline: datetime, now: datetime) -> bool:
    """A need takes matches while it is published and its deadline is ahead."""
    return status == NeedStatus.published and deadline > now


def check_editable(status: NeedStatus, need_id: str, version: int, expected: int) -> None:
    """An edit applies to an open need at the version the caller read."""
    if status != NeedStatus.published:
        raise Conflict(f"the need is {status}: only an open need is edited", field="status", rule="open")
    if version != expected:
        raise versions.stale_version("need", need_id, expected, version)


def patched_need(current: NeedRead, patch: NeedPatch) -> NeedUpdate:
    """The full edit a patch makes of `current`: the fields given replace theirs, the others are kept (nested
    values, perimeter and location, replaced whole). Raises `ValidationFailed` for an empty patch, and for the
    first rule the result breaks, naming its field."""
    if not patch.model_fields_set:
        raise ValidationFailed("give at least one field to change", field="body", rule="not_empty")
    values = current.model_dump(mode="json", include=set(NeedUpdate.model_fields))
    values.update(patch.model_dump(mode="json", include=patch.model_fields_set))
    try:
        return NeedUpdate.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = [str(part) for part in first["loc"]]
        ctx = first.get("ctx")
        if isinstance(ctx, dict) and isinstance(ctx.get("field"), str):
            parts.append(ctx["field"])  # a rule across fields names its field (services.common.rules)
        field = ".".join(parts) or "body"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(f"{field}: {message}", field=field, rule=first["type"]) from exc


def check_version(need_id: str, expected: int | None, current: int) -> None:
    """A patch names the version it edited, or none (then it applies to the current one)."""
    if expected is not None and expected != current:
        raise versions.stale_version("need", need_id, expected, current)


def check_closable(status: NeedStatus) -> None:
    """Closing, fulfilling or cancelling applies to an open need only (expiry picks only open ones too)."""
    if status != NeedStatus.published:
        raise Conflict(f"the need is already {status}", field="status", rule="open")


# --- a match's transitions --------------------------------------------------------------------------------


def viewed(status: MatchStatus) -> MatchStatus | None:
    """The status after its actor sees the match: viewed the first time, None (no change) afterwards."""
    return MatchStatus.viewed if status in UNSEEN else None


def check_response(status: MatchStatus, need_status: NeedStatus, response: MatchStatus) -> MatchStatus:
    """The actor answers (interested or declined) a pending match of an open need; it may change its mind."""
    if response not in RESPONSES:
        raise ValueError(f"a response is interested or declined, not {response}")
    if need_status != NeedStatus.published or status not in PENDING:
        raise Conflict(f"this match is {status} and its need {need_status}", field="status", rule="open")
    return response


def check_selection(status: MatchStatus) -> MatchStatus:
    """The need's owner selects an actor that said it is interested."""
    if status != MatchStatus.interested:
        raise Conflict(f"only an interested match is selected; this one is {status}", field="status", rule="interested")
    return MatchStatus.selected


# --- which matches are made, and which are announced -------------------------------------------------------


def kept(result: Result, min_score: float, min_unconfirmed: float = 0.0) -> bool:
    """A scored actor becomes a match when eligible and at least `match_min_score`; one that neither shares all
    the need's themes nor says it in its own words (`Result.confirmed`) at least `match_min_score_unconfirmed`
    too, so that a need with no real answer gets no match rather than weak ones."""
    return result.eligible and result.score >= min_score and (result.confirmed or result.score >= min_unconfirmed)


def answered(results: Iterable[Result]) -> bool:
    """Whether some kept candidate really answers the need (`Result.answers`): when none does, the need gets no
    match at all — its candidates only share a theme's label with it — rather than weak ones above the minimum."""
    return any(result.answers for result in results)


def joins_unmatched(result: Result, has_matches: bool) -> bool:
    """A newcomer joins a need that has no match yet only if it answers it (then the need is matched whole again:
    the candidates that only share a theme come with it, as if the need had been published after it)."""
    return has_matches or result.answers


def top(scored: Sequence[Scored], k: int) -> list[Scored]:
    """The `k` best scored actors, best first (ties by actor id, so that a need's matches do not depend on order)."""
    return sorted(scored, key=lambda item: (-item[1], item[0].id))[:k]


def new_match_status(interested: int, max_interested: int) -> MatchStatus:
    """New matches are announced (notified) until `match_max_interested` actors said yes; later ones wait (proposed)."""
    return MatchStatus.notified if interested < max_interested else MatchStatus.proposed


def announced(status: MatchStatus) -> bool:
    """Whether a new match of this status is published (`match.found`): a proposed one is not."""
    return status == MatchStatus.notified


def count_yes(statuses: Iterable[MatchStatus]) -> int:
    """How many of a need's matches said yes (interested or selected)."""
    return sum(1 for status in statuses if status in SAID_YES)


def ranks_in_top(score: float, scores: Iterable[float], k: int) -> bool:
    """A newcomer joins a need's matches when it would rank in its top `k` (ties with the k-th stay out)."""
    ranked = sorted(scores, reverse=True)
    return len(ranked) < k or score > ranked[k - 1]
