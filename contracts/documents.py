"""Documents generated from the contracts: a JSON Schema per message type and version, and one
AsyncAPI 3 document of the platform's exchanges, routing keys, queues and messages.

Generated, never edited by hand: ``make contracts`` writes them under
``contracts/schemas/`` and ``contracts/asyncapi.yaml``, and a test fails when
the checked-in files differ from what the schemas generate.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from contracts.envelope import EnvelopeSchema
from contracts.registry import MessageType, registry

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _converter():
    # A resolver that names no schema makes apispec inline nested schemas, so
    # each document stands alone.
    plugin = MarshmallowPlugin(schema_name_resolver=lambda schema: None)
    APISpec("linli", "1", "3.1.0", plugins=[plugin])
    return plugin.converter


def dataschema_of(message_type: MessageType) -> str:
    return f"urn:linli:contracts:{message_type.name}:v{message_type.version}"


def file_name(message_type: MessageType) -> str:
    return f"{message_type.name}.v{message_type.version}.json"


def json_schema(message_type: MessageType) -> dict:
    """The JSON Schema (2020-12) of a message type's ``data``, with its example."""
    body = _converter().schema2jsonschema(message_type.schema)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": dataschema_of(message_type),
        "title": f"{message_type.name} v{message_type.version}",
        "description": message_type.description,
        **body,
        "examples": [message_type.example],
    }


def envelope_schema() -> dict:
    body = _converter().schema2jsonschema(EnvelopeSchema)
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": "urn:linli:contracts:envelope",
            "title": "Linli envelope (CloudEvents 1.0, structured JSON)", **body}


@dataclass(frozen=True)
class Route:
    """Who publishes a type on which exchange, and which queues consume it."""

    message_type: MessageType
    exchange: str
    publisher: str
    consumers: tuple[tuple[str, str], ...] = ()  # (service, queue)


def asyncapi(routes: list[Route], extra_channels: dict, version: str, extra_messages=()) -> dict:
    """The AsyncAPI 3.0 document for ``routes`` plus channels described by hand (feeds, dead letters,
    replies), whose messages (``extra_messages``) are described like the others."""
    channels, operations, messages, schemas = {}, {}, {}, {"envelope": _without_meta(envelope_schema())}
    for mt in extra_messages:
        key = f"{mt.name}.v{mt.version}"
        schemas[key] = _without_meta(json_schema(mt))
        messages[key] = _message(mt, key)
    for route in sorted(routes, key=lambda r: (r.exchange, r.message_type.name, r.message_type.version)):
        mt = route.message_type
        key = f"{mt.name}.v{mt.version}"
        schemas[key] = _without_meta(json_schema(mt))
        messages[key] = _message(mt, key)
        channel = f"{route.exchange}/{mt.name}"
        channels.setdefault(channel, {
            "address": mt.name, "description": f"Routing key {mt.name} on the {route.exchange} exchange.",
            "messages": {}, "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": route.exchange, "type": "topic", "durable": True, "autoDelete": False}}}})
        channels[channel]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        operations[f"{route.publisher}.send.{key}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{_pointer(channel)}"},
            "summary": f"{route.publisher} publishes {mt.name}",
            "messages": [{"$ref": f"#/channels/{_pointer(channel)}/messages/{key}"}]}
        for service, queue in route.consumers:
            operations[f"{service}.receive.{key}.{queue}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{_pointer(channel)}"},
                "summary": f"{service} consumes {mt.name} from the durable queue {queue}",
                "bindings": {"amqp": {"ack": True}},
                "messages": [{"$ref": f"#/channels/{_pointer(channel)}/messages/{key}"}]}
    channels.update(copy.deepcopy(extra_channels))
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Linli (邻里)", "version": version, "description": (
            "The messages of the Linli community-governance platform. Every message is a CloudEvents 1.0 "
            "envelope (structured JSON) whose data follows the JSON Schema named by its dataschema; "
            "generated from contracts/ by `make contracts`.")},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _message(mt: MessageType, key: str) -> dict:
    return {
        "name": mt.name, "title": f"{mt.name} v{mt.version}", "summary": mt.description,
        "contentType": "application/json",
        "payload": {"allOf": [{"$ref": "#/components/schemas/envelope"},
                              {"type": "object", "properties": {
                                  "type": {"const": mt.name}, "dataschema": {"const": dataschema_of(mt)},
                                  "data": {"$ref": f"#/components/schemas/{key}"}}}]},
        "examples": [{"payload": {"type": mt.name, "dataschema": dataschema_of(mt), "data": mt.example}}],
    }


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _without_meta(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id", "examples")}


def all_types() -> list[MessageType]:
    return sorted(registry, key=lambda t: (t.name, t.version))
