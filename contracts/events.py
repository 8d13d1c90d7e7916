"""Messages the events service publishes: community events, registrations, attendance, feedback.

Ids, community, category, times and counts only; a feedback comment stays in
the events service (free text may hold anything).
"""
from marshmallow import Schema, fields, validate

from contracts.registry import registry

CATEGORIES = ("culture", "food", "lecture", "photography", "banquet", "volunteer", "consultation", "sport", "other")
AUDIENCES = ("community", "any_community", "tagged")


class _EventFacts(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    starts_at = fields.DateTime(required=True, format="iso")
    ends_at = fields.DateTime(required=True, format="iso")
    capacity = fields.Integer(required=True, validate=validate.Range(min=1))
    audience = fields.String(required=True, validate=validate.OneOf(AUDIENCES))
    audience_tags = fields.List(fields.String(), load_default=list)
    series_id = fields.String(allow_none=True, load_default=None)


class EventScheduledV1(_EventFacts):
    pass


class EventChangedV1(_EventFacts):
    changed_fields = fields.List(fields.String(), required=True)


class EventCancelledV1(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    starts_at = fields.DateTime(required=True, format="iso")


class EventCompletedV1(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    starts_at = fields.DateTime(required=True, format="iso")
    registered = fields.Integer(required=True)
    attended = fields.Integer(required=True)
    waitlisted = fields.Integer(required=True)


class _RegistrationFacts(Schema):
    registration_id = fields.String(required=True, validate=validate.Length(min=1))
    event_id = fields.String(required=True, validate=validate.Length(min=1))
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))


class RegistrationConfirmedV1(_RegistrationFacts):
    pass


class RegistrationWaitlistedV1(_RegistrationFacts):
    waitlist_position = fields.Integer(required=True, validate=validate.Range(min=1))


class RegistrationPromotedV1(_RegistrationFacts):
    confirm_by = fields.DateTime(required=True, format="iso")


class RegistrationCancelledV1(_RegistrationFacts):
    reason = fields.String(required=True, validate=validate.OneOf(
        ("by_resident", "event_cancelled", "promotion_expired")))


class AttendanceRecordedV1(_RegistrationFacts):
    method = fields.String(required=True, validate=validate.OneOf(("resident_id", "code", "walk_in")))


class FeedbackSubmittedV1(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1))
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    rating = fields.Integer(required=True, validate=validate.Range(min=1, max=10))
    has_comment = fields.Boolean(required=True)


_EVENT = {
    "event_id": "6b0880aa1c2d3e4f50617283", "community_id": "tongzilin", "category": "food",
    "starts_at": "2026-12-12T10:00:00+08:00", "ends_at": "2026-12-12T14:00:00+08:00", "capacity": 120,
    "audience": "any_community", "audience_tags": [], "series_id": None,
}
_REGISTRATION = {"registration_id": "6b0880aa1c2d3e4f50617299", "event_id": _EVENT["event_id"],
                 "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e", "community_id": "tongzilin"}


def _register(name, schema, description, example):
    return registry.define(name, 1, schema, description, example, producer="events")


EVENT_SCHEDULED = _register("event.scheduled", EventScheduledV1,
                            "A community event was published for registration.", _EVENT)
EVENT_CHANGED = _register("event.changed", EventChangedV1,
                          "A scheduled event's time, venue or capacity changed.",
                          {**_EVENT, "changed_fields": ["starts_at", "venue"]})
EVENT_CANCELLED = _register("event.cancelled", EventCancelledV1, "A scheduled event was cancelled.",
                            {k: _EVENT[k] for k in ("event_id", "community_id", "category", "starts_at")})
EVENT_COMPLETED = _register("event.completed", EventCompletedV1, "An event took place; its final counts.",
                            {**{k: _EVENT[k] for k in ("event_id", "community_id", "category", "starts_at")},
                             "registered": 118, "attended": 104, "waitlisted": 9})
REGISTRATION_CONFIRMED = _register("registration.confirmed", RegistrationConfirmedV1,
                                   "A resident holds a place at an event.", _REGISTRATION)
REGISTRATION_WAITLISTED = _register("registration.waitlisted", RegistrationWaitlistedV1,
                                    "An event was full; the resident is on its waitlist.",
                                    {**_REGISTRATION, "waitlist_position": 3})
REGISTRATION_PROMOTED = _register("registration.promoted", RegistrationPromotedV1,
                                  "A place came free and is offered to the first waitlisted resident until confirm_by.",
                                  {**_REGISTRATION, "confirm_by": "2026-12-10T20:00:00+08:00"})
REGISTRATION_CANCELLED = _register("registration.cancelled", RegistrationCancelledV1,
                                   "A registration ended before the event.", {**_REGISTRATION, "reason": "by_resident"})
ATTENDANCE_RECORDED = _register("attendance.recorded", AttendanceRecordedV1, "A resident was checked in.",
                                {**_REGISTRATION, "method": "code"})
FEEDBACK_SUBMITTED = _register("feedback.submitted", FeedbackSubmittedV1, "An attendee rated an event (1-10).",
                               {k: _EVENT[k] for k in ("event_id", "community_id", "category")}
                               | {"resident_id": _REGISTRATION["resident_id"], "rating": 9, "has_comment": True})
