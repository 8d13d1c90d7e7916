"""Messages internal systems of the city publish into Linli, and the reply they get.

The grid-management system, a community service-centre kiosk or a department's
case system publish these on the ``linli.ingest`` exchange (routing key = the
type name), or ``POST`` them to the residents service's ``/ingest``. Unlike
the platform's own messages, ``resident.form_submitted`` carries personal data
(a row of the collection form): it travels only on the ingest door, is never
republished on the internal bus, and is never logged.

Only the types in ``INGEST_TYPES`` may be sent by outside publishers;
``ingest.accepted`` is what Linli answers to a sender that set ``reply_to``.
"""
from datetime import datetime

from marshmallow import Schema, ValidationError, fields, validate

from contracts.envelope import EnvelopeSchema
from contracts.events import AUDIENCES, CATEGORIES
from contracts.registry import INGEST_DOOR, OUTSIDE, registry

# A body larger than this is refused (413 over HTTP) before it is parsed.
MAX_INGEST_BYTES = 64 * 1024
# What an ingest message's AMQP content_type (or HTTP Content-Type) may be.
INGEST_CONTENT_TYPES = ("application/json", "application/cloudevents+json")
INGEST_OUTCOMES = ("registered", "already_registered", "draft_created")
LANGUAGES = ("zh-CN", "en")


class IngestEnvelopeSchema(EnvelopeSchema):
    """The envelope as the ingest door takes it: ``dataschema`` is optional, as CloudEvents 1.0 makes it;
    without it the type names the schema (its latest version)."""

    dataschema = fields.String()


def _iso_time(value: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"not an ISO 8601 date and time: {value[:40]}") from None


def _time(**kwargs):
    """A date and time as ISO 8601 text, kept as text: without an offset it is read in the event's time_zone."""
    return fields.String(validate=_iso_time, **kwargs)


class ResidentFormSubmittedV1(Schema):
    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    # The columns as the collection form (信息采集表) has them, Chinese or English
    # headers (姓名 or name, 出生日期 or birth_date…), values as text.
    row = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=64)),
                      values=fields.String(allow_none=True, validate=validate.Length(max=500)),
                      required=True, validate=validate.Length(min=1, max=40))
    form_reference = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))


class EventProposedV1(Schema):
    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    # neighbourhood_centre, party_mass_service_centre, foreign_resident_service_centre, social_organisation
    organiser = fields.String(required=True, validate=validate.Length(min=1, max=64))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    title = fields.Dict(keys=fields.String(validate=validate.OneOf(LANGUAGES)),
                        values=fields.String(validate=validate.Length(min=1, max=4000)),
                        required=True, validate=validate.Length(min=1))
    description = fields.Dict(keys=fields.String(validate=validate.OneOf(LANGUAGES)),
                              values=fields.String(validate=validate.Length(min=1, max=4000)))
    venue = fields.String(required=True, validate=validate.Length(min=1, max=200))
    # With an offset, or read in time_zone (Asia/Shanghai unless given).
    starts_at = _time(required=True)
    ends_at = _time(required=True)
    time_zone = fields.String(validate=validate.Length(min=1, max=64))
    registration_opens_at = _time(allow_none=True)
    registration_closes_at = _time(allow_none=True)
    capacity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000))
    audience = fields.String(validate=validate.OneOf(AUDIENCES))
    audience_tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)),
                                validate=validate.Length(max=10))
    proposal_reference = fields.String(allow_none=True, validate=validate.Length(max=200))


class IngestAcceptedV1(Schema):
    ingested_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    type = fields.String(required=True, validate=validate.Length(min=1))
    outcome = fields.String(required=True, validate=validate.OneOf(INGEST_OUTCOMES))
    resident_id = fields.String(allow_none=True, load_default=None)
    event_id = fields.String(allow_none=True, load_default=None)


RESIDENT_FORM_SUBMITTED = registry.define(
    "resident.form_submitted",
    1,
    ResidentFormSubmittedV1,
    "An internal system submits one row of the resident information collection form (信息采集表); "
    "it becomes a registration (or the existing resident), or a rejection naming every error. "
    "Ingest only: carries personal data, never on the internal bus.",
    {
        "community_id": "tongzilin",
        "row": {"姓名": "王秀英", "性别": "女", "出生日期": "1952-03-14", "居住类型": "户籍", "国籍": "CN",
                "网格": "tongzilin-03", "户号": "TZL-03-0112", "联系电话": "13800000000",
                "人员标签": "老年人;党员", "同意短信通知": "是"},
        "form_reference": "grid-system:2026-11:tongzilin-03:0112",
    },
    producer=OUTSIDE,
)

EVENT_PROPOSED = registry.define(
    "event.proposed",
    1,
    EventProposedV1,
    "A community organisation proposes an event; it becomes a draft for the neighbourhood centre to schedule.",
    {
        "community_id": "tongzilin",
        "organiser": "foreign_resident_service_centre",
        "category": "food",
        "title": {"zh-CN": "国际美食节", "en": "International Food Festival"},
        "venue": "桐梓林社区广场",
        "starts_at": "2026-12-12T10:00:00+08:00",
        "ends_at": "2026-12-12T14:00:00+08:00",
        "capacity": 120,
        "audience": "any_community",
        "proposal_reference": "kiosk-7:proposal-0042",
    },
    producer=OUTSIDE,
)

INGEST_ACCEPTED = registry.define(
    "ingest.accepted",
    1,
    IngestAcceptedV1,
    "Linli's reply to an ingest message whose sender set reply_to: what it became.",
    {
        "ingested_id": "grid-0f6a2c4e-2026-11-20-0112",
        "type": "resident.form_submitted",
        "outcome": "registered",
        "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e",
        "event_id": None,
    },
    producer=INGEST_DOOR,
)

# The types outside publishers may send; anything else on linli.ingest is rejected.
INGEST_TYPES = frozenset({RESIDENT_FORM_SUBMITTED.name, EVENT_PROPOSED.name})
