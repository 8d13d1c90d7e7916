"""Resident registry rules. Pure Python: no framework, no database."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date

from babel import Locale
from babel.core import UnknownLocaleError
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema
from pypinyin import lazy_pinyin

from contracts.residents import DEPARTURE_REASONS, PERMIT_THRESHOLDS_DAYS, RESIDENCE_TYPES
from services.common.inputs import page_number
from services.residents.name_folding import fold

# ISO 3166-1 alpha-2 codes, as Babel (CLDR) knows them.
COUNTRY_CODES = frozenset(code for code in Locale("en").territories if re.fullmatch(r"[A-Z]{2}", code))
GENDERS = ("female", "male", "other", "unspecified")
DOCUMENT_TYPES = ("id_card", "passport", "travel_permit", "other")
PERMIT_TYPES = (
    "residence_permit_work", "residence_permit_study", "residence_permit_family",
    "residence_permit_other", "visa_business", "visa_tourist", "visa_other",
)
CHANNELS = ("inapp", "sms", "email")
DEFAULT_CONSENT = {"inapp": True, "sms": False, "email": False}
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_HAN = re.compile(r"[\u3400-\u9fff]")


@functools.lru_cache(maxsize=1024)  # CLDR look-ups are slow; a form repeats a few tags
def is_language_tag(tag: str) -> bool:
    """A well-formed BCP 47 tag whose language CLDR knows (``zh-CN``, ``en``, ``fr``…)."""
    if not _BCP47.match(tag):
        return False
    try:
        Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError):
        return False
    return True


def romanise(name: str) -> str:
    """``王秀英`` -> ``wang xiuying``; a Latin-script name is only lower-cased."""
    if not _HAN.search(name):
        return " ".join(name.lower().split())
    syllables = lazy_pinyin(name)
    if len(syllables) > 1 and all(_HAN.match(ch) for ch in name[:1]):
        return " ".join([syllables[0], "".join(syllables[1:])]).lower()  # family name, given name
    return "".join(syllables).lower()


def search_text(name: str) -> str:
    """What a name search looks in: the name, its romanised form, and that without spaces,
    so ``秀英``, ``wang xiuying`` and ``WangXiuying`` all find 王秀英; accents folded, so ``zoe`` finds Zoë."""
    romanised = fold(romanise(name))
    return " | ".join((fold(" ".join(name.split())), romanised, romanised.replace(" ", "")))


class Consent(Schema):
    class Meta:
        unknown = RAISE

    inapp = fields.Boolean()
    sms = fields.Boolean()
    email = fields.Boolean()


class ResidentFields(Schema):
    """Every field a worker may set; registration requires some, an update none."""

    class Meta:
        unknown = RAISE  # a misspelt field is an error, not silently dropped

    grid_id = fields.String(allow_none=True, validate=validate.Length(max=64))
    household_id = fields.String(allow_none=True, validate=validate.Length(max=64))
    name = fields.String(validate=validate.Length(min=1, max=200))
    gender = fields.String(validate=validate.OneOf(GENDERS))
    birth_date = fields.Date(allow_none=True)
    phone = fields.String(allow_none=True, validate=validate.Regexp(
        r"^\+?[0-9 ()-]{5,20}$", error="not a phone number: 5 to 20 digits, spaces, +, ( ) or -"))
    email = fields.Email(allow_none=True)
    residence_type = fields.String(validate=validate.OneOf(RESIDENCE_TYPES))
    nationality = fields.String()
    preferred_language = fields.String()
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)), validate=validate.Length(max=30))
    consent = fields.Nested(Consent)
    document_type = fields.String(allow_none=True, validate=validate.OneOf(DOCUMENT_TYPES))
    document_number = fields.String(allow_none=True, validate=validate.Regexp(
        r"^[A-Za-z0-9-]{5,30}$", error="not a document number: 5 to 30 letters, digits or -"))
    permit_type = fields.String(allow_none=True, validate=validate.OneOf(PERMIT_TYPES))
    permit_expires_on = fields.Date(allow_none=True)

    @validates("nationality")
    def _nationality(self, value, **_):
        if value not in COUNTRY_CODES:
            raise ValidationError(f"not an ISO 3166-1 alpha-2 country code: {value}")

    @validates("preferred_language")
    def _language(self, value, **_):
        if not is_language_tag(value):
            raise ValidationError(f"not a BCP 47 language tag: {value}")

    @validates("birth_date")
    def _birth_date(self, value, **_):
        if value and (value > date.today() or value.year < 1890):
            raise ValidationError(f"not a plausible birth date: {value.isoformat()}")


class RegisterResident(ResidentFields):
    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    residence_type = fields.String(required=True, validate=validate.OneOf(RESIDENCE_TYPES))
    nationality = fields.String(required=True)
    preferred_language = fields.String(load_default="zh-CN")
    gender = fields.String(load_default="unspecified", validate=validate.OneOf(GENDERS))
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)
    consent = fields.Nested(Consent, load_default=lambda: dict(DEFAULT_CONSENT))

    @validates_schema
    def _consistent(self, data, **_):
        check_consistency(data)


def check_consistency(resident: dict) -> None:
    """Rules across fields, for a new resident or for one after an update."""
    foreign = resident.get("residence_type") == "foreign"
    nationality = resident.get("nationality")
    if foreign and nationality == "CN":
        raise ValidationError("a foreign resident's nationality cannot be CN", "nationality")
    if not foreign and nationality not in (None, "CN"):
        raise ValidationError("a non-CN national is registered with residence_type 'foreign'", "residence_type")
    if bool(resident.get("document_type")) != bool(resident.get("document_number")):
        raise ValidationError("document_type and document_number go together", "document_number")
    if resident.get("permit_expires_on") and not resident.get("permit_type"):
        raise ValidationError("a permit expiry needs the permit_type", "permit_type")
    if resident.get("permit_type") and not foreign:
        raise ValidationError("only foreign residents hold residence permits or visas", "permit_type")


class UpdateResident(ResidentFields):
    """A partial update: only the fields present change. Moving is its own command."""


class MoveResident(Schema):
    class Meta:
        unknown = RAISE

    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    grid_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    household_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    moved_on = fields.Date(load_default=date.today)


class RecordDeparture(Schema):
    class Meta:
        unknown = RAISE

    reason = fields.String(required=True, validate=validate.OneOf(DEPARTURE_REASONS))
    departed_on = fields.Date(load_default=date.today)


class SearchResidents(Schema):
    class Meta:
        unknown = RAISE

    community_id = fields.String(required=True)
    grid_id = fields.String()
    household_id = fields.String()
    tag = fields.List(fields.String())
    nationality = fields.String()
    residence_type = fields.String(validate=validate.OneOf(RESIDENCE_TYPES))
    name = fields.String(validate=validate.Length(min=1, max=100))
    status = fields.String(load_default="active", validate=validate.OneOf(("active", "departed", "all")))
    page = page_number()
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))


def facts(resident_id: str, resident: dict) -> dict:
    """What a message may say about a resident: ids and categories only."""
    birth_date = resident.get("birth_date")
    return {
        "resident_id": resident_id,
        "community_id": resident["community_id"],
        "grid_id": resident.get("grid_id"),
        "residence_type": resident["residence_type"],
        "nationality": resident["nationality"],
        "preferred_language": resident["preferred_language"],
        "birth_year": birth_date.year if birth_date else None,
        "tags": sorted(set(resident.get("tags") or [])),
        "consent": {**DEFAULT_CONSENT, **(resident.get("consent") or {})},
    }


CATEGORICAL_FIELDS = ("residence_type", "nationality", "preferred_language", "grid_id", "tags", "consent")


def update_facts(resident_id: str, community_id: str, changes: dict) -> dict:
    """``resident.updated``: every changed field's name, the new values of categorical ones only."""
    message = {"resident_id": resident_id, "community_id": community_id, "changed_fields": sorted(changes)}
    for field in CATEGORICAL_FIELDS:
        if field in changes:
            message[field] = sorted(set(changes[field] or [])) if field == "tags" else changes[field]
    return message


def permit_threshold(expires_on: date, today: date) -> int | None:
    """The most urgent reminder threshold a permit has reached today, if any.

    30 days out -> 30; 7 -> 7; 1 -> 1; 5 days out -> 7 (a missed day still
    warns, at the urgency it has now); expired or far off -> None.
    """
    days_left = (expires_on - today).days
    if days_left < 0:
        return None
    reached = [t for t in PERMIT_THRESHOLDS_DAYS if days_left <= t]
    return min(reached) if reached else None


# What each purpose may read of a resident (PIPL: purpose limitation, minimum necessary).
CONTACT_PURPOSES = {
    "notify": ("preferred_language", "consent", "phone", "email", "community_id"),
    "permit_assistance": ("preferred_language", "name", "nationality", "permit_type", "permit_expires_on",
                          "phone", "community_id"),
    "event_checkin": ("name", "community_id"),
}

# What a view of a resident holds that identifies the person: shown over HTTP to whom the token allows,
# never in clear in an RPC reply (the broker's users could read it; get_contact seals what it answers).
PERSONAL_VIEW_FIELDS = frozenset({"name", "name_romanised", "birth_date", "phone", "email", "document_number"})

ERASABLE_FIELDS = ("name", "name_romanised", "name_search", "phone", "email", "birth_date", "document_type",
                   "document_cipher", "document_key", "person_key", "former_identity", "household_id")


# -- the same person: one rule for every door (HTTP, ingest, collection-form import) ----------

IDENTITY_RULES = {"document_key": "same document", "person_key": "same name, birth date and phone"}
"""The identity keys and what each means. ``document_key`` is city-wide; ``person_key`` hashes the
community in, so it only ever matches in the same community."""


@dataclass(frozen=True)
class Match:
    """A resident of the registry who shares an identity key with someone being registered."""

    id: str
    community_id: str
    status: str  # "active" | "departed"
    rule: str  # which key matched, as ``IDENTITY_RULES`` names it
    erased: bool = False


@dataclass(frozen=True)
class SamePerson:
    """What registering someone means, given who the registry already holds.

    ``verdict``: ``new`` (register, linked to ``previous_id`` if the person lived here before),
    ``already_registered`` (the same community: nothing to do, ``existing_id`` is them) or
    ``registered_elsewhere`` (active in ``community_id``: move them, do not register twice)."""

    verdict: str
    existing_id: str | None = None
    community_id: str | None = None
    rule: str | None = None
    previous_id: str | None = None

    @property
    def is_new(self) -> bool:
        return self.verdict == "new"

    @property
    def message(self) -> str:
        if self.verdict == "already_registered":
            return f"this person is already registered as resident {self.existing_id} ({self.rule})"
        if self.verdict == "registered_elsewhere" and self.existing_id is None:
            return (f"this person is registered in a community this token does not cover ({self.rule}); "
                    "whoever covers that community can move them here")
        if self.verdict == "registered_elsewhere":
            return (f"this person is registered in community {self.community_id} as resident {self.existing_id} "
                    f"({self.rule}); move them with POST /residents/{self.existing_id}/move")
        return "a new registration"

    def seen_from(self, may_see) -> "SamePerson":
        """The verdict as told to a reader who sees only the communities ``may_see`` admits: the other
        record's id and community stay hidden from whoever does not reach that community."""
        if self.verdict != "registered_elsewhere" or may_see(self.community_id):
            return self
        return SamePerson(self.verdict, rule=self.rule)

    @property
    def details(self) -> dict:
        if self.existing_id is None:
            return {"rule": self.rule}
        details = {"existing_id": self.existing_id, "rule": self.rule}
        if self.verdict == "registered_elsewhere":
            details["community_id"] = self.community_id
        return details


def same_person(community_id: str, matches: list[Match]) -> SamePerson:
    """The same-person rule. (a) active in the same community: ``already_registered``; (b) active in
    another: ``registered_elsewhere``; (c) departed: registers again, linked to the latest departed
    record; (d) erased: nothing left to match, registers as new. A document match outranks a
    name + birth date + phone match; ids are ObjectIds, so the greatest is the latest."""
    live = [m for m in matches if not m.erased]
    active = sorted((m for m in live if m.status == "active"),
                    key=lambda m: (m.community_id != community_id, m.rule != IDENTITY_RULES["document_key"]))
    if active:
        first = active[0]
        verdict = "already_registered" if first.community_id == community_id else "registered_elsewhere"
        return SamePerson(verdict, first.id, first.community_id, first.rule)
    departed = [m.id for m in live if m.status == "departed"]
    return SamePerson("new", previous_id=max(departed) if departed else None)
