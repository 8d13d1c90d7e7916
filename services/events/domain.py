"""Community events: their rules, as pure Python (no framework, no database)."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from contracts.events import AUDIENCES, CATEGORIES
from services.common.community_time import DEFAULT_TIME_ZONE
from services.common.inputs import TimeZone

ORGANISERS = ("neighbourhood_centre", "party_mass_service_centre", "foreign_resident_service_centre",
              "social_organisation")
MAX_OCCURRENCES = 52
# Which status may follow which.
TRANSITIONS = {"draft": {"scheduled", "cancelled"}, "scheduled": {"cancelled", "completed"},
               "cancelled": set(), "completed": set()}
TIMES = ("starts_at", "ends_at", "registration_opens_at", "registration_closes_at")
# A registration that holds a place or waits for one: a resident has at most one per event.
ACTIVE_REGISTRATION = ("confirmed", "waitlisted", "offered")


class RuleBroken(Exception):
    """A request that breaks a rule of events: the rule's code and a sentence naming it."""

    status = 409

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status:
            self.status = status


class Text(Schema):
    """A text in zh-CN and en; one may be missing, the other is then the fallback."""

    class Meta:
        unknown = RAISE

    zh_CN = fields.String(data_key="zh-CN", validate=validate.Length(min=1, max=4000))
    en = fields.String(validate=validate.Length(min=1, max=4000))

    @validates_schema
    def _one_at_least(self, data, **_):
        if not data:
            raise ValidationError("give the text in zh-CN, en or both")

    @post_load
    def _keys(self, data, **_):
        return {("zh-CN" if key == "zh_CN" else key): value for key, value in data.items()}


class Recurrence(Schema):
    class Meta:
        unknown = RAISE

    weekly = fields.Boolean(required=True, validate=validate.Equal(True, error="only weekly series exist"))
    count = fields.Integer(required=True, validate=validate.Range(min=2, max=MAX_OCCURRENCES))


class EventFields(Schema):
    """Every field an organiser may set; creating requires some, a change none.

    Times may carry an offset; without one they are read in ``time_zone``
    (Asia/Shanghai unless given).
    """

    class Meta:
        unknown = RAISE

    organiser = fields.String(validate=validate.OneOf(ORGANISERS))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    title = fields.Nested(Text)
    description = fields.Nested(Text)
    venue = fields.String(validate=validate.Length(min=1, max=200))
    time_zone = TimeZone()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    registration_opens_at = fields.DateTime(allow_none=True)
    registration_closes_at = fields.DateTime(allow_none=True)
    capacity = fields.Integer(validate=validate.Range(min=1, max=100_000))
    audience = fields.String(validate=validate.OneOf(AUDIENCES))
    audience_tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)), validate=validate.Length(max=10))

    @post_load
    def _aware_times(self, data, **_):
        zone = ZoneInfo(data.get("time_zone") or DEFAULT_TIME_ZONE)
        for name in TIMES:
            value = data.get(name)
            if value is not None and value.tzinfo is None:
                data[name] = value.replace(tzinfo=zone)
        return data


class EventQuery(Schema):
    """What ``GET /events/<id>`` reads from its query string."""

    class Meta:
        unknown = EXCLUDE

    lang = fields.String(metadata={"description": "zh-CN (the default) or en: the language of the texts"})


class CreateEvent(EventFields):
    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    organiser = fields.String(required=True, validate=validate.OneOf(ORGANISERS))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    title = fields.Nested(Text, required=True)
    venue = fields.String(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.DateTime(required=True)
    ends_at = fields.DateTime(required=True)
    capacity = fields.Integer(required=True, validate=validate.Range(min=1, max=100_000))
    audience = fields.String(load_default="community", validate=validate.OneOf(AUDIENCES))
    audience_tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)
    time_zone = TimeZone(load_default=DEFAULT_TIME_ZONE)
    recurrence = fields.Nested(Recurrence, load_default=None, allow_none=True)

    @validates_schema
    def _consistent(self, data, **_):
        check_consistency(data)


class ChangeEvent(EventFields):
    """A partial change of a draft or scheduled event."""


def check_consistency(event: dict) -> None:
    """Rules across fields, for a new event or one after a change."""
    starts, ends = event.get("starts_at"), event.get("ends_at")
    if starts and ends and ends <= starts:
        raise ValidationError("an event ends after it starts", "ends_at")
    if starts and ends and ends - starts > timedelta(days=14):
        raise ValidationError("an event lasts at most 14 days; make a series for more", "ends_at")
    opens, closes = event.get("registration_opens_at"), event.get("registration_closes_at")
    if opens and closes and closes <= opens:
        raise ValidationError("registration closes after it opens", "registration_closes_at")
    if closes and ends and closes > ends:
        raise ValidationError("registration closes before the event ends", "registration_closes_at")
    if event.get("audience") == "tagged" and not event.get("audience_tags"):
        raise ValidationError("a tagged audience names its tags", "audience_tags")


def occurrences(starts_at: datetime, ends_at: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """A weekly series: the same local wall-clock time each week, ``count`` times."""
    zone = starts_at.tzinfo
    duration = ends_at - starts_at
    local_start = starts_at.replace(tzinfo=None)
    result = []
    for week in range(count):
        start = (local_start + timedelta(weeks=week)).replace(tzinfo=zone)
        result.append((start, start + duration))
    return result


def require_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS[current]:
        raise RuleBroken("invalid_transition", f"a {current} event cannot become {target}")


def title_in(title: dict, language: str) -> str:
    """The title in ``language``, else the other one: one may be missing."""
    base = "zh-CN" if language.startswith("zh") else "en"
    return title.get(base) or title.get("en") or title.get("zh-CN")


def require_registration_open(event: dict, now: datetime) -> None:
    if event["status"] != "scheduled":
        raise RuleBroken("event_not_open", f"the event is {event['status']}; registration is closed")
    opens = event.get("registration_opens_at")
    closes = event.get("registration_closes_at") or event["starts_at"]
    if opens and now < opens:
        raise RuleBroken("registration_not_open_yet", f"registration opens at {opens.isoformat()}")
    if now >= closes:
        raise RuleBroken("registration_closed", f"registration closed at {closes.isoformat()}")


def require_in_audience(event: dict, resident: dict) -> None:
    if resident.get("status") != "active":
        raise RuleBroken("resident_not_active", "the resident has departed or been erased", 422)
    if event["audience"] == "any_community":
        return
    if resident["community_id"] != event["community_id"]:
        raise RuleBroken("not_in_audience", f"this event is for residents of {event['community_id']}", 422)
    if event["audience"] == "tagged" and not set(event["audience_tags"]) & set(resident.get("tags", [])):
        raise RuleBroken("not_in_audience",
                         f"this event is for residents tagged {', '.join(event['audience_tags'])}", 422)


def rating_summary(ratings: list[int]) -> dict:
    distribution = {str(score): 0 for score in range(1, 11)}
    for rating in ratings:
        distribution[str(rating)] += 1
    average = round(sum(ratings) / len(ratings), 2) if ratings else None
    return {"count": len(ratings), "average": average, "distribution": distribution}
