"""Messages the residents service publishes.

They carry identifiers and categories only: no names, phone numbers or
document numbers. Whoever needs contact details asks the residents service.
"""
from marshmallow import Schema, fields, validate

from contracts.registry import MessageType, registry

RESIDENCE_TYPES = ("registered", "non_registered", "foreign")


class _ResidentFacts(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    grid_id = fields.String(allow_none=True, load_default=None)
    residence_type = fields.String(required=True, validate=validate.OneOf(RESIDENCE_TYPES))
    nationality = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{2}$"))
    preferred_language = fields.String(required=True, validate=validate.Length(min=2, max=35))
    birth_year = fields.Integer(allow_none=True, load_default=None)
    tags = fields.List(fields.String(), load_default=list)


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


RESIDENT_REGISTERED = registry.register(
    MessageType(
        name="resident.registered",
        version=1,
        schema=ResidentRegisteredV1,
        description="A resident was entered into a community's registry.",
        example={
            "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
            "community_id": "tongzilin",
            "grid_id": "tongzilin-03",
            "residence_type": "foreign",
            "nationality": "FR",
            "preferred_language": "en",
            "birth_year": 1986,
            "tags": ["volunteer"],
        },
    )
)

RESIDENT_UPDATED = registry.register(
    MessageType(
        name="resident.updated",
        version=1,
        schema=ResidentUpdatedV1,
        description="Some of a resident's registry fields changed.",
        example={
            "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e3f405162",
            "community_id": "tongzilin",
            "changed_fields": ["preferred_language", "phone"],
            "preferred_language": "zh-CN",
        },
    )
)
