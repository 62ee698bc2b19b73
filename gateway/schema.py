"""The public GraphQL schema: the contract's queries, mutations and subscription, composed from the domain types."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial
from pathlib import Path

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway import idempotency, subscriptions
from gateway.context import GInfo, require_principal
from gateway.cost import QueryCostLimiter
from gateway.errors import PublicErrors, error
from gateway.types import actors as actor_types
from gateway.types import credentials as credential_types
from gateway.types import events as event_types
from gateway.types import matching as matching_types
from gateway.types import people as people_types
from gateway.types import references as reference_types
from gateway.types import webhooks as webhook_types
from gateway.types.common import PrincipalType, Theme
from services.common.auth import Role
from services.common.settings import Settings
from services.contracts.errors import ErrorCode
from services.contracts.vocabularies import THEMES

SDL_PATH = Path(__file__).with_name("schema.graphql")


@strawberry.type
class Query:
    @strawberry.field(description="The caller of this request")
    def me(self, info: GInfo) -> PrincipalType:
        principal = require_principal(info)
        return PrincipalType(
            subject=principal.subject,
            role=principal.role.value,
            actor_id=strawberry.ID(principal.actor_id) if principal.actor_id else None,
            scopes=sorted(principal.scopes),
        )

    actor = strawberry.field(resolver=actor_types.actor, description="One actor by id")
    actors = strawberry.field(resolver=actor_types.actors, description="Search the directory")
    event = strawberry.field(resolver=event_types.event, description="One event by id")
    events = strawberry.field(resolver=event_types.events, description="Events, soonest first")
    need = strawberry.field(resolver=matching_types.need, description="One need by id")
    needs = strawberry.field(resolver=matching_types.needs, description="Needs, newest first")
    match = strawberry.field(resolver=matching_types.match, description="One match by id")
    matches = strawberry.field(
        resolver=matching_types.matches, description="Matches by ids, in that order (null: unknown or not yours)"
    )
    webhooks = strawberry.field(resolver=webhook_types.webhooks, description="Your endpoints")
    credentials = strawberry.field(resolver=credential_types.credentials, description="Issued credentials (admins)")
    members = strawberry.field(resolver=people_types.members, description="An actor's members (its admins)")

    @strawberry.field(description="The themes of the controlled vocabulary")
    def themes(self) -> list[Theme]:
        return [Theme(code=term.code, label=term.label) for term in THEMES]

    service_types = strawberry.field(
        resolver=reference_types.service_types, description="The service types of the controlled vocabulary"
    )
    actor_kinds = strawberry.field(
        resolver=reference_types.actor_kinds, description="The kinds of actor of the controlled vocabulary"
    )
    communes = strawberry.field(
        resolver=reference_types.communes,
        description="Current communes by name (accents and case ignored), most populous first",
    )
    territories = strawberry.field(
        resolver=reference_types.territories_named,
        description="INSEE territories by name, with the codes perimeters and filters take",
    )


@strawberry.type
class Mutation:
    register_actor = strawberry.mutation(resolver=actor_types.register_actor)
    update_actor = strawberry.mutation(resolver=actor_types.update_actor)
    archive_actor = strawberry.mutation(
        resolver=actor_types.archive_actor,
        description="Archive an actor: no longer listed nor matched, still referenced",
    )
    publish_event = strawberry.mutation(resolver=event_types.publish_event)
    register_for_event = strawberry.mutation(resolver=event_types.register_for_event)
    cancel_registration = strawberry.mutation(resolver=event_types.cancel_registration)
    cancel_event = strawberry.mutation(
        resolver=event_types.cancel_event, description="Cancel an event: its registrations are cancelled and told"
    )
    publish_need = strawberry.mutation(resolver=matching_types.publish_need)
    update_need = strawberry.mutation(resolver=matching_types.update_need)
    close_need = strawberry.mutation(resolver=matching_types.close_need)
    respond_to_match = strawberry.mutation(resolver=matching_types.respond_to_match)
    mark_match_viewed = strawberry.mutation(resolver=matching_types.mark_match_viewed)
    select_match = strawberry.mutation(resolver=matching_types.select_match)
    create_webhook = strawberry.mutation(resolver=webhook_types.create_webhook)
    update_webhook = strawberry.mutation(resolver=webhook_types.update_webhook)
    rotate_webhook_secret = strawberry.mutation(resolver=webhook_types.rotate_webhook_secret)
    delete_webhook = strawberry.mutation(resolver=webhook_types.delete_webhook)
    retry_webhook_delivery = strawberry.mutation(resolver=webhook_types.retry_webhook_delivery)
    issue_credential = strawberry.mutation(resolver=credential_types.issue_credential)
    revoke_credential = strawberry.mutation(resolver=credential_types.revoke_credential)
    invite_member = strawberry.mutation(resolver=people_types.invite_member)
    remove_member = strawberry.mutation(resolver=people_types.remove_member)
    erase_person = strawberry.mutation(
        resolver=people_types.erase_person,
        description="Erase a person (GDPR art. 17, admins): sessions, sign-in links, directory, event registrations",
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Matches as they are found: a local authority sees its needs', an actor its own"
    )
    async def match_found(
        self, info: GInfo, need_id: strawberry.ID | None = None
    ) -> AsyncGenerator[matching_types.Match, None]:
        principal = require_principal(info)
        gateway = info.context.gateway
        if need_id is not None and principal.role is Role.COLLECTIVITY:
            need = await gateway.clients.matching.get_need(str(need_id), principal)
            if need["owner_id"] != principal.actor_id:
                raise error("a local authority follows the matches of its own needs only", ErrorCode.FORBIDDEN)
        async with gateway.feed.subscribe(principal, str(need_id) if need_id else None) as subscriber:
            while True:
                found = await subscriber.queue.get()
                info.context.fresh_loaders()  # each match's actor and need are read afresh
                # A match just found was created at its last update.
                yield matching_types.Match.of(found.model_dump() | {"created_at": found.updated_at})

    @strawberry.subscription(
        description=(
            "A need's matches as they change (viewed, answered, selected, withdrawn), each in its new state, in order: "
            "its local authority sees them all, an actor its own"
        )
    )
    async def match_updated(self, info: GInfo, need_id: strawberry.ID) -> AsyncGenerator[matching_types.Match, None]:
        principal = require_principal(info)
        gateway = info.context.gateway
        # The rules of matchFound: an authority follows its own needs (refused otherwise), an actor sees its own
        # matches only, partners and admins every need's. An unknown need is NOT_FOUND whoever asks.
        need = await gateway.clients.matching.get_need(str(need_id), principal)
        if principal.role is Role.COLLECTIVITY and need["owner_id"] != principal.actor_id:
            raise error("a local authority follows the matches of its own needs only", ErrorCode.FORBIDDEN)
        async with gateway.feed.subscribe(principal, str(need_id), subscriptions.UPDATED) as subscriber:
            while True:
                changed = await subscriber.queue.get()
                info.context.fresh_loaders()
                # The state the event carries, not a fresh read: two quick changes arrive as two states, in order.
                yield matching_types.Match.of(
                    changed.model_dump() | {"created_at": changed.created_at or changed.updated_at}
                )


class GatewaySchema(strawberry.Schema):
    """Strawberry's schema, without its log line per error: a caller's mistake is not the server's (the
    `PublicErrors` extension logs the unexpected ones once)."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        return None


def create_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the settings' protections: depth, token, alias and cost limits; parser and validation
    caches."""
    # The limits are validation rules: build their classes once, so that the validation cache (keyed by the
    # rules) serves every request; an extension instance per operation then only adds these same classes.
    rules = [
        *QueryDepthLimiter(max_depth=settings.gateway_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.gateway_max_aliases).validation_rules,
    ]
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=idempotency.SCALARS),
        extensions=[
            # Factories: each operation gets its own instances (the caches are shared at module level).
            partial(MaxTokensLimiter, max_token_count=settings.gateway_max_tokens),
            partial(ParserCache, maxsize=512),
            partial(AddValidationRules, rules),
            partial(ValidationCache, maxsize=512),
            partial(QueryCostLimiter, max_cost=settings.gateway_max_cost),
            PublicErrors,  # last, so that it sees every error raised before it
        ],
    )


def sdl(settings: Settings | None = None) -> str:
    """The schema's SDL as committed in gateway/schema.graphql."""
    return str(create_schema(settings or Settings(_env_file=None)).as_str()) + "\n"
