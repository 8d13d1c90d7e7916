"""Resident registration rules. Pure Python: no framework, no database."""
from __future__ import annotations

import re

from babel import Locale
from babel.core import UnknownLocaleError
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from contracts.residents import RESIDENCE_TYPES

# ISO 3166-1 alpha-2 codes, as Babel (CLDR) knows them.
COUNTRY_CODES = frozenset(code for code in Locale("en").territories if re.fullmatch(r"[A-Z]{2}", code))
GENDERS = ("female", "male", "other", "unspecified")
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def is_language_tag(tag: str) -> bool:
    """A well-formed BCP 47 tag whose language CLDR knows (``zh-CN``, ``en``, ``fr``…)."""
    if not _BCP47.match(tag):
        return False
    try:
        Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError):
        return False
    return True


class RegisterResident(Schema):
    """The command to register a resident, as an API or a collection form gives it."""

    class Meta:
        unknown = EXCLUDE

    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    grid_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    household_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    gender = fields.String(load_default="unspecified", validate=validate.OneOf(GENDERS))
    birth_date = fields.Date(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(r"^\+?[0-9 ()-]{5,20}$"))
    residence_type = fields.String(required=True, validate=validate.OneOf(RESIDENCE_TYPES))
    nationality = fields.String(required=True)
    preferred_language = fields.String(load_default="zh-CN")
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)

    @validates("nationality")
    def _nationality(self, value, **_):
        if value not in COUNTRY_CODES:
            raise ValidationError(f"not an ISO 3166-1 alpha-2 country code: {value}")

    @validates("preferred_language")
    def _language(self, value, **_):
        if not is_language_tag(value):
            raise ValidationError(f"not a BCP 47 language tag: {value}")

    @validates_schema
    def _residence_matches_nationality(self, data, **_):
        foreign = data.get("residence_type") == "foreign"
        if foreign and data.get("nationality") == "CN":
            raise ValidationError("a foreign resident's nationality cannot be CN", "nationality")
        if not foreign and data.get("nationality") not in (None, "CN"):
            raise ValidationError("a non-CN national is registered with residence_type 'foreign'", "residence_type")


def registered_facts(resident_id: str, resident: dict) -> dict:
    """What ``resident.registered`` may say about a resident: ids and categories only."""
    birth_date = resident.get("birth_date")
    return {
        "resident_id": resident_id,
        "community_id": resident["community_id"],
        "grid_id": resident.get("grid_id"),
        "residence_type": resident["residence_type"],
        "nationality": resident["nationality"],
        "preferred_language": resident["preferred_language"],
        "birth_year": birth_date.year if birth_date else None,
        "tags": sorted(set(resident.get("tags", []))),
    }
