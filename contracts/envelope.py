"""The CloudEvents 1.0 envelope every Linli message travels in.

Structured mode, JSON: the envelope is the message body. Linli adds two
extension attributes: ``community`` (the community the fact is about, for
routing and entitlement) and ``correlationid`` (the request that caused it).
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import ClassVar
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from contracts.registry import ContractError, UnknownMessageType, registry

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_TYPE_PATTERN = r"^[a-z]+(\.[a-z_]+)+$"


class EnvelopeError(ContractError):
    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__(f"invalid envelope: {errors}")


class EnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    specversion = fields.String(required=True, validate=validate.Equal(SPECVERSION))
    id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    source = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(required=True, validate=validate.Regexp(_TYPE_PATTERN))
    time = fields.DateTime(required=True, format="iso")
    subject = fields.String(allow_none=True, load_default=None)
    dataschema = fields.String(required=True)
    datacontenttype = fields.String(load_default=CONTENT_TYPE, validate=validate.Equal(CONTENT_TYPE))
    data = fields.Dict(required=True)
    community = fields.String(allow_none=True, load_default=None)
    correlationid = fields.String(allow_none=True, load_default=None)


@dataclass(frozen=True)
class Envelope:
    specversion: str
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None
    dataschema: str
    datacontenttype: str
    data: dict
    community: str | None = None
    correlationid: str | None = None
    known: ClassVar[bool] = True  # False for an UnknownEnvelope

    @property
    def version(self) -> int:
        """The contract version, read from ``dataschema`` (``...:v2`` -> 2)."""
        _, _, tail = self.dataschema.rpartition(":v")
        return int(tail) if tail.isdigit() else 1

    def to_wire(self) -> dict:
        wire = asdict(self)
        wire["time"] = self.time.isoformat()
        return wire


def build_envelope(
    type_name: str,
    data: dict,
    *,
    source: str,
    subject: str | None = None,
    community: str | None = None,
    correlationid: str | None = None,
    version: int | None = None,
    message_id: str | None = None,
) -> Envelope:
    """Validate ``data`` against its contract and wrap it; raises before anything is sent."""
    message_type = registry.get(type_name, version)
    return Envelope(
        specversion=SPECVERSION,
        id=message_id or str(uuid.uuid4()),
        source=source,
        type=message_type.name,
        time=datetime.now(timezone.utc),
        subject=subject,
        dataschema=message_type.dataschema,
        datacontenttype=CONTENT_TYPE,
        data=message_type.dump(data),
        community=community,
        correlationid=correlationid,
    )


# One instance, reused: making a schema costs more than loading with it (it holds no per-call state).
_ENVELOPE_SCHEMA = EnvelopeSchema()


def parse_envelope(body) -> Envelope:
    """Validate a received envelope and its ``data`` against the registered contract."""
    if not isinstance(body, dict):
        raise EnvelopeError({"_schema": ["message body is not a JSON object"]})
    try:
        attrs = _ENVELOPE_SCHEMA.load(body)
    except ValidationError as exc:
        raise EnvelopeError(exc.messages) from None
    envelope = Envelope(**attrs)
    message_type = registry.get(envelope.type, envelope.version)
    return Envelope(**{**attrs, "data": message_type.load(envelope.data)})


@dataclass(frozen=True)
class UnknownEnvelope(Envelope):
    """A well-formed envelope of a type or version this build has no contract for."""

    known: ClassVar[bool] = False


def parse_envelope_or_unknown(body) -> tuple[Envelope, bool]:
    """``(envelope, True)`` as ``parse_envelope``; for a well-formed envelope of a type or version
    this build does not know, ``(envelope with its data unchecked, False)`` instead of an error.
    For consumers that keep everything (a history) but interpret only what they know."""
    try:
        return parse_envelope(body), True
    except UnknownMessageType:
        return UnknownEnvelope(**_ENVELOPE_SCHEMA.load(body)), False
