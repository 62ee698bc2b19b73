"""Partners' webhook endpoints and their delivery log: register, change, rotate the secret, delete, retry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from gateway.context import GInfo, require_principal
from gateway.types.common import body_of


@strawberry.type(description="One try at delivering a webhook")
class DeliveryAttempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@strawberry.type(description="One event sent to one endpoint; its id is the webhook-id header of every attempt")
class WebhookDelivery:
    id: strawberry.ID
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @strawberry.field(description="Every attempt, first first")
    async def attempt_log(self, info: GInfo) -> list[DeliveryAttempt]:
        principal = require_principal(info)
        rows = await info.context.gateway.clients.matching.delivery_attempts(str(self.id), principal)
        return [
            DeliveryAttempt(
                attempt=r["attempt"],
                at=datetime.fromisoformat(r["at"]),
                status_code=r["status_code"],
                error=r["error"],
                duration_ms=r["duration_ms"],
            )
            for r in rows
        ]

    @staticmethod
    def of(data: dict[str, Any]) -> WebhookDelivery:
        return WebhookDelivery(
            id=strawberry.ID(data["id"]),
            event_id=data["event_id"],
            event_type=data["event_type"],
            status=data["status"],
            attempts=data["attempts"],
            next_attempt_at=_when(data["next_attempt_at"]),
            last_error=data["last_error"],
            created_at=datetime.fromisoformat(data["created_at"]),
            delivered_at=_when(data["delivered_at"]),
        )


@strawberry.type(description="A partner's endpoint receiving signed events (Standard Webhooks)")
class Webhook:
    id: strawberry.ID
    url: str
    event_types: list[str]
    description: str
    status: str
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Its deliveries, newest first")
    async def deliveries(self, info: GInfo, status: str | None = None) -> list[WebhookDelivery]:
        principal = require_principal(info)
        rows = await info.context.gateway.clients.matching.webhook_deliveries(str(self.id), status, principal)
        return [WebhookDelivery.of(row) for row in rows]

    @staticmethod
    def fields_of(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": strawberry.ID(data["id"]),
            "url": data["url"],
            "event_types": data["event_types"],
            "description": data["description"],
            "status": data["status"],
            "disabled_reason": data.get("disabled_reason"),
            "created_at": datetime.fromisoformat(data["created_at"]),
            "updated_at": datetime.fromisoformat(data["updated_at"]),
        }

    @staticmethod
    def of(data: dict[str, Any]) -> Webhook:
        return Webhook(**Webhook.fields_of(data))


@strawberry.type(description="An endpoint with its signing secret, shown this once")
class WebhookWithSecret(Webhook):
    secret: str

    @staticmethod
    def of(data: dict[str, Any]) -> WebhookWithSecret:
        return WebhookWithSecret(**Webhook.fields_of(data), secret=data["secret"])


@strawberry.input
class CreateWebhookInput:
    url: str
    event_types: list[str] = strawberry.field(description="need.published, match.found, event.published…")
    description: str | None = None


@strawberry.input(description="The fields to change")
class UpdateWebhookInput:
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = strawberry.field(default=None, description="Re-enable a disabled endpoint, or pause one")


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- resolvers ----------------------------------------------------------------------------------------------


async def webhooks(info: GInfo) -> list[Webhook]:
    rows = await info.context.gateway.clients.matching.list_webhooks(require_principal(info))
    return [Webhook.of(row) for row in rows]


async def create_webhook(info: GInfo, input: CreateWebhookInput) -> WebhookWithSecret:
    principal = require_principal(info)
    data = await info.context.gateway.clients.matching.create_webhook(body_of(input), principal)
    return WebhookWithSecret.of(data)


async def update_webhook(info: GInfo, id: strawberry.ID, input: UpdateWebhookInput) -> Webhook:
    principal = require_principal(info)
    data = await info.context.gateway.clients.matching.update_webhook(str(id), body_of(input), principal)
    return Webhook.of(data)


async def rotate_webhook_secret(info: GInfo, id: strawberry.ID) -> WebhookWithSecret:
    data = await info.context.gateway.clients.matching.rotate_webhook_secret(str(id), require_principal(info))
    return WebhookWithSecret.of(data)


async def delete_webhook(info: GInfo, id: strawberry.ID) -> strawberry.ID:
    await info.context.gateway.clients.matching.delete_webhook(str(id), require_principal(info))
    return id


async def retry_webhook_delivery(info: GInfo, id: strawberry.ID) -> WebhookDelivery:
    data = await info.context.gateway.clients.matching.retry_delivery(str(id), require_principal(info))
    return WebhookDelivery.of(data)
