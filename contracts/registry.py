"""The registry of message types: name + version -> marshmallow schema, and who produces each.

A type's ``producer`` is the service whose exchange (``<producer>.events``) carries it, so a consumer
names the type and the platform knows where it comes from; ``OUTSIDE`` (systems of the city, on the
ingest door) and ``INGEST_DOOR`` (the door's reply to its sender) are not on the platform's bus.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError


OUTSIDE = "outside"
INGEST_DOOR = "ingest-door"
NOT_ON_THE_BUS = frozenset({OUTSIDE, INGEST_DOOR})


class ContractError(Exception):
    """Base class for every refusal made in the name of a contract."""


class UnknownMessageType(ContractError):
    def __init__(self, type_name: str, version: int | None = None):
        self.type_name = type_name
        self.version = version
        where = f"{type_name} v{version}" if version else type_name
        super().__init__(f"unknown message type: {where} (not in contracts/)")


class InvalidPayload(ContractError):
    def __init__(self, type_name: str, version: int, errors: dict):
        self.type_name = type_name
        self.version = version
        self.errors = errors
        super().__init__(f"invalid {type_name} v{version} payload: {errors}")


@dataclass(frozen=True)
class MessageType:
    """One version of one message type, e.g. ``resident.registered`` v1."""

    name: str
    version: int
    schema: type[Schema]
    description: str
    example: dict[str, Any] = field(default_factory=dict)
    producer: str = ""

    @property
    def on_the_bus(self) -> bool:
        """Whether a service publishes it on its exchange, ``<producer>.events``."""
        return bool(self.producer) and self.producer not in NOT_ON_THE_BUS

    def __str__(self) -> str:
        return self.name

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def dataschema(self) -> str:
        """URI of the JSON Schema document for this type and version."""
        return f"urn:linli:contracts:{self.name}:v{self.version}"

    def dump(self, data: dict) -> dict:
        """Validate ``data`` for publishing and return its wire form.

        Unknown fields are refused here: a producer must not put on the bus
        what the contract does not name (that is how personal data leaks).
        """
        schema = _instance(self.schema)
        try:
            loaded = schema.load(plain(data))
        except ValidationError as exc:
            raise InvalidPayload(self.name, self.version, exc.messages) from None
        return schema.dump(loaded)

    def load(self, data: Any) -> dict:
        """Validate received ``data``; unknown fields are dropped (additive changes)."""
        if not isinstance(data, dict):
            raise InvalidPayload(self.name, self.version, {"_schema": ["not an object"]})
        try:
            return _instance(self.schema, EXCLUDE).load(data)
        except ValidationError as exc:
            raise InvalidPayload(self.name, self.version, exc.messages) from None


@functools.lru_cache(maxsize=None)
def _instance(schema: type[Schema], unknown: str | None = None) -> Schema:
    """One instance per schema (and ``unknown``), reused: making one costs more than a load with it."""
    return schema(unknown=unknown) if unknown else schema()


def plain(value):
    """Dates as the ISO strings the wire carries, so producers may hand over ``date`` objects."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


class Registry:
    def __init__(self) -> None:
        self._types: dict[tuple[str, int], MessageType] = {}

    def register(self, message_type: MessageType) -> MessageType:
        if message_type.key in self._types:
            raise ContractError(f"{message_type.name} v{message_type.version} registered twice")
        self._types[message_type.key] = message_type
        return message_type

    def define(self, name: str, version: int, schema: type[Schema], description: str, example: dict, *,
               producer: str) -> MessageType:
        """Register one version of a message type; the contracts modules' one way to declare it."""
        return self.register(MessageType(name, version, schema, description, example, producer))

    def producers(self, *, besides: str | None = None) -> tuple[str, ...]:
        """The services that publish on the bus (every producer but ``OUTSIDE`` and ``INGEST_DOOR``),
        by name, ``besides`` left out: where a consumer of everything binds."""
        return tuple(sorted({t.producer for t in self if t.on_the_bus} - {besides}))

    def get(self, name: str, version: int | None = None) -> MessageType:
        if version is None:
            versions = [v for (n, v) in self._types if n == name]
            if not versions:
                raise UnknownMessageType(name)
            version = max(versions)
        try:
            return self._types[(name, version)]
        except KeyError:
            raise UnknownMessageType(name, version) from None

    def __iter__(self):
        return iter(sorted(self._types.values(), key=lambda t: t.key))

    def __contains__(self, key) -> bool:
        return key in self._types


registry = Registry()
