"""What a partner department receives: the partner-feed view of a message.

Every delivery to a partner — on its AMQP queue, to its webhook, or in a page
of its pull feed — is the CloudEvents envelope of the message as it travelled
on the bus (same ``id``, ``type``, ``time``, ``data``…). One thing may be
added, and only for a partner entitled to it: ``data.personal``, the
resident's personal fields the partner's scope names (e.g. the document
number of a foreign resident, for exit-entry administration). Those fields are
never on the internal bus; the notifications service asks the residents
service for them when it delivers. ``data.personal`` is absent when the
partner has no such scope, when the message names no resident, and when the
resident's personal data was erased.

This is a view, not a message type: it is not in the registry and is never
published on the internal bus.
"""
from marshmallow import EXCLUDE, Schema, fields

from contracts.envelope import EnvelopeSchema

PERSONAL_KEY = "personal"


class PersonalFieldsV1(Schema):
    """The resident's fields a partner may be entitled to; it receives only those its scope names."""

    class Meta:
        unknown = EXCLUDE

    resident_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    name_romanised = fields.String(allow_none=True)
    gender = fields.String(allow_none=True)
    birth_date = fields.Date(allow_none=True)
    nationality = fields.String(allow_none=True)
    document_type = fields.String(allow_none=True)
    document_number = fields.String(allow_none=True)
    permit_type = fields.String(allow_none=True)
    permit_expires_on = fields.Date(allow_none=True)
    phone = fields.String(allow_none=True)


# The fields a partner's scope may name (everything above but the id, which every message carries).
PARTNER_PERSONAL_FIELDS = frozenset(PersonalFieldsV1().fields) - {"resident_id"}


class PartnerFeedEnvelopeV1(EnvelopeSchema):
    """A message as a partner receives it: the bus envelope, ``data`` as its contract says,
    plus ``data.personal`` (``PersonalFieldsV1``) where the partner is entitled to it."""


class PartnerFeedPageV1(Schema):
    """``GET /feeds/<partner>``: envelopes in the partner's feed order; ``next`` is the cursor
    to pass as ``after`` for the following page (the same page whenever it is read again)."""

    items = fields.List(fields.Nested(PartnerFeedEnvelopeV1), required=True)
    next = fields.String(required=True)


def personal_fields_of(envelope_wire: dict) -> dict | None:
    """The personal fields a delivered envelope carries, validated, or None."""
    personal = (envelope_wire.get("data") or {}).get(PERSONAL_KEY)
    return PersonalFieldsV1().load(personal) if personal is not None else None
