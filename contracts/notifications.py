"""Messages the notifications service publishes: counts of what reached residents, never who."""
from marshmallow import Schema, fields, validate

from contracts.registry import registry

CHANNELS = ("inapp", "email", "sms")
OUTCOMES = ("sent", "failed", "skipped")


class NotificationOutcomesV1(Schema):
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    kind = fields.String(required=True, validate=validate.Length(min=1, max=64))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    count = fields.Integer(required=True, validate=validate.Range(min=1))
    # How many of them were written in the reader's preferred language (not a fallback).
    in_own_language = fields.Integer(required=True, validate=validate.Range(min=0))
    occurred_on = fields.Date(required=True)


NOTIFICATION_OUTCOMES = registry.define(
    "notification.outcomes", 1, NotificationOutcomesV1,
    "How many notifications of one kind were sent, failed or skipped on one channel in a community "
    "(published per batch; for the committee's figures).",
    {"community_id": "tongzilin", "kind": "event_announced", "channel": "inapp", "outcome": "sent",
     "count": 1200, "in_own_language": 1130, "occurred_on": "2026-12-01"},
    producer="notifications",
)
