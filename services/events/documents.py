"""How events are stored (mongoengine, database alias ``events``)."""
from datetime import datetime, timezone

from mongoengine import DateTimeField, DictField, Document, IntField, ListField, StringField

ALIAS = "events"


def _now():
    return datetime.now(timezone.utc)


class Event(Document):
    """One event. ``places_left`` is what a registration takes atomically
    (``places_left > 0`` -> decrement), so two registrations racing for the
    last place cannot both win."""

    meta = {"db_alias": ALIAS, "collection": "events", "indexes": [("community_id", "starts_at", "id"), "series_id"]}

    community_id = StringField(required=True)
    organiser = StringField(required=True)
    category = StringField(required=True)
    title = DictField(required=True)
    description = DictField()
    venue = StringField(required=True)
    time_zone = StringField(required=True)
    starts_at = DateTimeField(required=True)
    ends_at = DateTimeField(required=True)
    registration_opens_at = DateTimeField()
    registration_closes_at = DateTimeField()
    capacity = IntField(required=True)
    places_left = IntField(required=True)
    waitlist_seq = IntField(default=0)
    audience = StringField(required=True)
    audience_tags = ListField(StringField())
    status = StringField(default="draft", choices=("draft", "scheduled", "cancelled", "completed"))
    series_id = StringField()
    occurrence = IntField()
    created_at = DateTimeField(default=_now)
    updated_at = DateTimeField(default=_now)


class Registration(Document):
    meta = {
        "db_alias": ALIAS,
        "collection": "registrations",
        "indexes": [
            {"fields": ["event_id", "resident_id"], "unique": True},
            {"fields": ["code"], "unique": True},
            ("event_id", "status", "waitlist_seq"),
            ("status", "confirm_by"),
        ],
    }

    event_id = StringField(required=True)
    resident_id = StringField(required=True)
    community_id = StringField(required=True)  # the resident's
    status = StringField(required=True,
                         choices=("confirmed", "waitlisted", "offered", "cancelled", "expired"))
    waitlist_seq = IntField()
    confirm_by = DateTimeField()
    code = StringField(required=True)  # for the door: printed, or shown as a QR code
    attended_at = DateTimeField()
    checkin_method = StringField()
    created_at = DateTimeField(default=_now)
    updated_at = DateTimeField(default=_now)


class Feedback(Document):
    meta = {"db_alias": ALIAS, "collection": "feedback", "indexes": ["event_id"]}

    id = StringField(primary_key=True)  # "<event>:<resident>": one rating per attendee
    event_id = StringField(required=True)
    resident_id = StringField(required=True)
    rating = IntField(required=True, min_value=1, max_value=10)
    comment = StringField()
    at = DateTimeField(default=_now)


ALL_DOCUMENTS = (Event, Registration, Feedback)
