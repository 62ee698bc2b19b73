"""The committed SDL is the schema the code builds, and the schema keeps the contract's names."""

from __future__ import annotations

from gateway.schema import SDL_PATH, sdl


def test_the_committed_sdl_matches_the_code() -> None:
    assert SDL_PATH.read_text() == sdl(), (
        "gateway/schema.graphql is out of date: review the contract change, then run "
        "`python -c 'from gateway.schema import SDL_PATH, sdl; SDL_PATH.write_text(sdl())'`"
    )


def test_the_public_contract_names_are_present() -> None:
    text = sdl()
    for line in (
        "me: Principal!",
        "match(id: ID!): Match",
        "actor(id: ID!): Actor",
        "actors(filter: ActorFilter = null, first: Int = null, after: String = null): ActorConnection!",
        "events(filter: EventFilter = null, first: Int = null, after: String = null): EventConnection!",
        "needs(filter: NeedFilter = null, first: Int = null, after: String = null): NeedConnection!",
        "themes: [Theme!]!",
        "registerActor(input: RegisterActorInput!, idempotencyKey: IdempotencyKey = null): Actor!",
        "updateActor(id: ID!, input: UpdateActorInput!): Actor!",
        "publishEvent(input: PublishEventInput!, idempotencyKey: IdempotencyKey = null): Event!",
        "registerForEvent(eventId: ID!, input: RegistrationInput!, idempotencyKey: IdempotencyKey = null): Registration!",
        "cancelRegistration(id: ID!): Registration!",
        "publishNeed(input: PublishNeedInput!, idempotencyKey: IdempotencyKey = null): Need!",
        "closeNeed(id: ID!, status: NeedClosure!, comment: String = null): Need!",
        "respondToMatch(id: ID!, response: MatchResponse!, comment: String = null): Match!",
        "markMatchViewed(id: ID!): Match!",
        "selectMatch(id: ID!, comment: String = null): Match!",
        "createWebhook(input: CreateWebhookInput!): WebhookWithSecret!",
        "matchFound(needId: ID = null): Match!",
    ):
        assert line in text, line
    for connection in ("ActorConnection", "EventConnection", "NeedConnection"):
        block = text.split(f"type {connection} {{", 1)[1].split("}", 1)[0]
        assert "edges:" in block and "pageInfo: PageInfo!" in block and "totalCount: Int" in block


def test_the_gateway_enums_carry_the_services_codes() -> None:
    from gateway.types import events as event_types
    from gateway.types import matching as matching_types
    from services.events import model as events_model
    from services.matching import model as matching_model

    pairs = [
        (event_types.EventKind, events_model.EventKind),
        (event_types.RegistrationMode, events_model.RegistrationMode),
        (matching_types.NeedKind, matching_model.NeedKind),
        (matching_types.NeedStatus, matching_model.NeedStatus),
        (matching_types.NeedClosure, matching_model.NeedClosure),
    ]
    for exposed, service in pairs:
        assert {member.value for member in exposed} == {member.value for member in service}, exposed.__name__
        assert all(member.name == member.value.upper() for member in exposed), exposed.__name__
