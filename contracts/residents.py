"""Messages the residents service publishes.

They carry identifiers and categories only: no names, phone numbers or
document numbers. Whoever needs contact details asks the residents service.
"""
from functools import partial

from marshmallow import Schema, fields, validate

from contracts.registry import registry

RESIDENCE_TYPES = ("registered", "non_registered", "foreign")
CHANNELS = ("inapp", "sms", "email")


def _consent(**kwargs):
    """Which channels the resident agreed to be contacted on: booleans, not addresses."""
    return fields.Dict(keys=fields.String(validate=validate.OneOf(CHANNELS)), values=fields.Boolean(), **kwargs)


class _ResidentFacts(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    grid_id = fields.String(allow_none=True, load_default=None)
    residence_type = fields.String(required=True, validate=validate.OneOf(RESIDENCE_TYPES))
    nationality = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{2}$"))
    preferred_language = fields.String(required=True, validate=validate.Length(min=2, max=35))
    birth_year = fields.Integer(allow_none=True, load_default=None)
    tags = fields.List(fields.String(), load_default=list)
    # Added after v1 was first released (optional, so additive): lets the
    # notifications service pick channels without asking for contact details.
    consent = _consent(allow_none=True, load_default=None)


class ResidentRegisteredV1(_ResidentFacts):
    pass


class ResidentUpdatedV1(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    changed_fields = fields.List(fields.String(), required=True)
    # The new values of the categorical fields that changed; personal fields
    # (name, phone, documents) are named in changed_fields but never sent.
    residence_type = fields.String(validate=validate.OneOf(RESIDENCE_TYPES))
    nationality = fields.String(validate=validate.Regexp(r"^[A-Z]{2}$"))
    preferred_language = fields.String(validate=validate.Length(min=2, max=35))
    grid_id = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    consent = _consent()


class ResidentMovedV1(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    from_community_id = fields.String(required=True, validate=validate.Length(min=1))
    grid_id = fields.String(allow_none=True, load_default=None)
    residence_type = fields.String(required=True, validate=validate.OneOf(RESIDENCE_TYPES))
    moved_on = fields.Date(required=True)


DEPARTURE_REASONS = ("moved_away", "deceased", "other")


class ResidentDepartedV1(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    residence_type = fields.String(required=True, validate=validate.OneOf(RESIDENCE_TYPES))
    reason = fields.String(required=True, validate=validate.OneOf(DEPARTURE_REASONS))
    departed_on = fields.Date(required=True)


PERMIT_THRESHOLDS_DAYS = (30, 7, 1)


class ResidentPermitExpiringV1(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    permit_type = fields.String(required=True)
    expires_on = fields.Date(required=True)
    threshold_days = fields.Integer(required=True, validate=validate.OneOf(PERMIT_THRESHOLDS_DAYS))
    days_left = fields.Integer(required=True)


class ResidentErasedV1(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    erased_on = fields.Date(required=True)


class ResidentImportCompletedV1(Schema):
    import_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(allow_none=True, load_default=None)
    rows_total = fields.Integer(required=True)
    registered = fields.Integer(required=True)
    already_registered = fields.Integer(required=True)
    rejected = fields.Integer(required=True)


# Every type below is published by the residents service.
_define = partial(registry.define, producer="residents")

RESIDENT_REGISTERED = _define(
    "resident.registered",
    1,
    ResidentRegisteredV1,
    "A resident was entered into a community's registry.",
    {
        "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
        "community_id": "tongzilin",
        "grid_id": "tongzilin-03",
        "residence_type": "foreign",
        "nationality": "FR",
        "preferred_language": "en",
        "birth_year": 1986,
        "tags": ["volunteer"],
        "consent": {"inapp": True, "sms": False, "email": True},
    },
)

RESIDENT_UPDATED = _define(
    "resident.updated",
    1,
    ResidentUpdatedV1,
    "Some of a resident's registry fields changed.",
    {
        "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
        "community_id": "tongzilin",
        "changed_fields": ["preferred_language", "phone"],
        "preferred_language": "zh-CN",
    },
)

RESIDENT_MOVED = _define(
    "resident.moved",
    1,
    ResidentMovedV1,
    "A resident moved from one community to another (community_id is the new one).",
    {
        "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
        "community_id": "yulin",
        "from_community_id": "tongzilin",
        "grid_id": "yulin-01",
        "residence_type": "foreign",
        "moved_on": "2026-11-20",
    },
)

RESIDENT_DEPARTED = _define(
    "resident.departed",
    1,
    ResidentDepartedV1,
    "A resident left the community's registry (moved away, deceased, other).",
    {
        "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
        "community_id": "tongzilin",
        "residence_type": "foreign",
        "reason": "moved_away",
        "departed_on": "2026-11-20",
    },
)

RESIDENT_PERMIT_EXPIRING = _define(
    "resident.permit_expiring",
    1,
    ResidentPermitExpiringV1,
    "A foreign resident's residence permit or visa expires within 30, 7 or 1 days.",
    {
        "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
        "community_id": "tongzilin",
        "permit_type": "residence_permit_work",
        "expires_on": "2026-12-26",
        "threshold_days": 30,
        "days_left": 30,
    },
)

RESIDENT_ERASED = _define(
    "resident.erased",
    1,
    ResidentErasedV1,
    "A resident's personal data was erased; the id remains for statistics.",
    {"resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162", "community_id": "tongzilin", "erased_on": "2026-11-20"},
)

RESIDENT_IMPORT_COMPLETED = _define(
    "resident.import_completed",
    1,
    ResidentImportCompletedV1,
    "A bulk import of a resident information collection form (信息采集表) finished.",
    {
        "import_id": "6b0871a2c3d4e5f60718293a",
        "community_id": "tongzilin",
        "rows_total": 1200,
        "registered": 1180,
        "already_registered": 12,
        "rejected": 8,
    },
)
