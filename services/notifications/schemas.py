"""What the notifications HTTP API accepts: a resident's preferences, an inbox listing."""
from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from services.common.inputs import TimeZone
from services.common.paging import PageQuery
from services.notifications.policy import ALL, CHANNELS, OPTIONAL_CATEGORIES

_HH_MM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="not a time of day as HH:MM")


class OptOut(Schema):
    class Meta:
        unknown = RAISE

    category = fields.String(required=True, validate=validate.OneOf(
        OPTIONAL_CATEGORIES, error="not a category one can opt out of (permit and safety messages are critical)"))
    channel = fields.String(required=True, validate=validate.OneOf((*CHANNELS, ALL)))


class QuietHoursSchema(Schema):
    class Meta:
        unknown = RAISE

    start = fields.String(required=True, validate=_HH_MM)
    end = fields.String(required=True, validate=_HH_MM)


class PreferencesSchema(Schema):
    class Meta:
        unknown = RAISE

    time_zone = TimeZone(load_default=None, allow_none=True)
    opt_outs = fields.List(fields.Nested(OptOut), load_default=list)
    # null: no quiet hours; absent: the default 22:00-08:00.
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    digest = fields.Boolean(load_default=False)
    digest_at = fields.String(load_default="08:00", validate=_HH_MM)


class InboxQuery(PageQuery):
    """``GET /residents/<id>/inbox``, ``GET /communities/<id>/inbox``: newest first, a page at a time."""

    class Meta:
        unknown = RAISE

    unread = fields.Boolean(load_default=False, metadata={"description": "only what is not read yet"})


class UnsubscribeQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    token = fields.String(load_default="", metadata={"description": "the signed token from the email's link"})
