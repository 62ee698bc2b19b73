"""The AsyncAPI 3 document of the messaging contract, generated from the topic plan and the payload models."""

from __future__ import annotations

from typing import Any, cast

import asyncpg
import yaml
from pydantic import BaseModel

from services.common.envelope import CONTENT_TYPE, CORRELATION_ATTR, SPECVERSION
from services.common.settings import Settings
from services.contracts import topics
from services.contracts.events import REGISTRY, EventPayload
from services.contracts.topics import TOPICS, TopicSpec
from services.launch import registry

VERSION = "0.1.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_REF = "#/components/schemas/{model}"

HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 in Kafka binary mode: the attributes are `ce_*` headers, `data` is the value.",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": SPECVERSION},
        "ce_id": {"type": "string", "description": "Event id (UUID); consumers dedupe on it"},
        "ce_source": {"type": "string", "description": "The producing service, e.g. //maillage/directory"},
        "ce_type": {"type": "string", "description": "One of the CloudEvents types of this channel"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "Id of the resource the event is about"},
        f"ce_{CORRELATION_ATTR}": {"type": "string", "description": "Correlation id of the request that caused it"},
        "content-type": {"type": "string", "const": CONTENT_TYPE},
    },
}


def _camel(name: str) -> str:
    head, *rest = name.replace("-", ".").split(".")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _channel_id(spec: TopicSpec) -> str:
    # maillage.directory.actor.v1 -> directoryActor
    return _camel(".".join(spec.name.split(".")[1:-1]))


def _producer(spec: TopicSpec) -> str:
    return spec.name.split(".")[1]


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's `$defs` into the components' schemas (refs already point there)."""
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    return schema


def _model_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=SCHEMA_REF, mode="serialization")
    return _hoist(schema, schemas)


def consumer_groups(settings: Settings) -> list[tuple[str, str, list[str], list[str]]]:
    """(service, group, topics, CloudEvents types handled) of every service's consumers."""
    groups: list[tuple[str, str, list[str], list[str]]] = []
    for service, parts in registry.SERVICE_PARTS.items():
        # Building a consumer only records its plan; the pool is used once it runs.
        for consumer in parts().build_consumers(cast(asyncpg.Pool, None), settings):
            groups.append((service, consumer.name, list(consumer.topics), sorted(consumer.handlers)))
    return groups


def document() -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document, as plain data (from the defaults, never from the environment)."""
    settings = Settings.model_construct()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    by_topic: dict[str, list[tuple[str, type[EventPayload]]]] = {}
    for ce_type, model in REGISTRY.items():
        by_topic.setdefault(model.topic, []).append((ce_type, model))

    channel_of: dict[str, str] = {}
    for spec in TOPICS:
        channel = _channel_id(spec)
        channel_of[spec.name] = channel
        channel_messages: dict[str, Any] = {}
        for ce_type, model in sorted(by_topic.get(spec.name, [])):
            message_id = model.__name__
            schemas[message_id] = _model_schema(model, schemas)
            messages[message_id] = {
                "name": ce_type,
                "title": ce_type.removeprefix("org.maillage."),
                "summary": (model.__doc__ or ce_type).strip().splitlines()[0],
                "contentType": CONTENT_TYPE,
                "headers": {**HEADERS, "properties": {**HEADERS["properties"], "ce_type": {"const": ce_type}}},
                "payload": {"$ref": SCHEMA_REF.format(model=message_id)},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": f"The {spec.key}: its events stay in order"},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
            channel_messages[message_id] = {"$ref": f"#/components/messages/{message_id}"}
        channels[channel] = {
            "address": spec.name,
            "title": spec.name,
            "description": f"{spec.description}. Key: {spec.key}. Dead letters go to `{spec.dlq}`.",
            "messages": channel_messages,
            "bindings": {
                "kafka": {
                    "topic": spec.name,
                    "partitions": spec.partitions,
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        operations[f"{_producer(spec)}Sends{channel[:1].upper()}{channel[1:]}"] = {
            "action": "send",
            "title": f"{_producer(spec)} publishes {spec.name}",
            "description": "Written to the service's outbox in the same transaction as the change, then relayed.",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in channel_messages],
        }

    for service, group, topic_names, handled in consumer_groups(settings):
        for topic in topic_names:
            channel = channel_of[topic]
            handled_here = [
                m
                for ce_type, m in ((t, REGISTRY[t].__name__) for t in handled if t in REGISTRY)
                if REGISTRY[ce_type].topic == topic
            ]
            operations[f"{_camel(group)}Receives{channel[:1].upper()}{channel[1:]}"] = {
                "action": "receive",
                "title": f"{service} consumer group {group} reads {topic}",
                "description": (
                    "Idempotent: each event id is applied once (inbox table); a malformed record goes to the "
                    "dead-letter topic and the group moves on."
                ),
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in sorted(handled_here)],
                "bindings": {
                    "kafka": {"groupId": {"type": "string", "const": group}, "bindingVersion": KAFKA_BINDING_VERSION}
                },
            }

    # The types the gateway's feed reads, from the feed itself (the launcher may import the gateway; no service does).
    from gateway.subscriptions import PAYLOADS

    operations["gatewayReceivesMatchingMatch"] = {
        "action": "receive",
        "title": f"the gateway reads {topics.MATCH} for the matchFound and matchUpdated subscriptions",
        "description": (
            "No consumer group: every gateway replica reads every match from the end of the topic and pushes it "
            "to its own subscribers (filtered by role), so subscriptions work whichever replica holds them."
        ),
        "channel": {"$ref": f"#/channels/{channel_of[topics.MATCH]}"},
        "messages": [
            {"$ref": f"#/channels/{channel_of[topics.MATCH]}/messages/{model.__name__}"}
            for model in sorted(PAYLOADS.values(), key=lambda model: model.__name__)
        ],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Maillage messaging contract",
            "version": VERSION,
            "description": (
                "Topics, keys and CloudEvents types exchanged by the Maillage services. Generated by "
                "`maillage asyncapi` from services/contracts/topics.py and services/contracts/events.py; "
                "tests/unit/test_deploy.py fails when this file is out of date."
            ),
            "license": {"name": "AGPL-3.0-or-later", "url": "https://www.gnu.org/licenses/agpl-3.0.html"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "compose": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "The broker of docker-compose.yml (KRaft, one node)",
            },
            "embedded": {
                "host": f"127.0.0.1:{settings.kafka_port}",
                "protocol": "kafka",
                "description": "The embedded broker of `maillage dev`",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    """The document as YAML, as committed in deploy/asyncapi.yaml."""
    header = "# Generated by `maillage asyncapi --output deploy/asyncapi.yaml`: do not edit by hand.\n"
    return header + yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=110)
