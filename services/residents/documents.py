"""How the registry is stored (mongoengine, database alias ``residents``)."""
from datetime import datetime, timezone

from mongoengine import (
    BooleanField,
    DateField,
    DateTimeField,
    DictField,
    Document,
    IntField,
    ListField,
    StringField,
)

from services.common.auth import Principal

ALIAS = "residents"


def _now():
    return datetime.now(timezone.utc)


class Resident(Document):
    """A resident. Document numbers are stored only encrypted (``document_cipher``)
    and found by keyed hashes (``document_key``, ``person_key``) that make a
    second registration of the same person collide on a unique index. Only an active
    resident holds them: a departure moves them to ``former_identity`` (not unique), so
    a person who returns registers again, linked through ``previous_id``."""

    meta = {
        "db_alias": ALIAS,
        "collection": "residents",
        "indexes": [
            ("community_id", "status", "name_romanised", "id"),  # search: a community's residents by name
            ("community_id", "household_id"),
            {"fields": ["document_key"], "unique": True, "sparse": True},
            {"fields": ["person_key"], "unique": True, "sparse": True},
            {"fields": ["former_identity"], "sparse": True},
            ("permit_expires_on",),
        ],
    }

    community_id = StringField(required=True)
    grid_id = StringField()
    household_id = StringField()
    name = StringField()
    name_romanised = StringField()
    name_search = StringField()
    gender = StringField(default="unspecified")
    birth_date = DateField()
    birth_year = IntField()  # kept through erasure, for age bands
    phone = StringField()
    email = StringField()
    residence_type = StringField(required=True)
    nationality = StringField(required=True)
    preferred_language = StringField(required=True)
    tags = ListField(StringField())
    consent = DictField()
    document_type = StringField()
    document_cipher = StringField()
    document_key = StringField()
    person_key = StringField()
    former_identity = ListField(StringField(), default=None)  # ``document_key:<hash>``… once departed
    previous_id = StringField()  # the same person's earlier, departed record
    permit_type = StringField()
    permit_expires_on = DateField()
    status = StringField(default="active", choices=("active", "departed"))
    departure_reason = StringField()
    departed_on = DateField()
    erased_at = DateTimeField()
    import_id = StringField()
    registered_at = DateTimeField(default=_now)
    updated_at = DateTimeField(default=_now)


class ImportJob(Document):
    meta = {"db_alias": ALIAS, "collection": "imports"}

    filename = StringField()
    content_sha256 = StringField(required=True)
    status = StringField(default="queued", choices=("queued", "running", "completed", "failed"))
    rows_total = IntField(default=0)
    rows_done = IntField(default=0)
    last_row = IntField(default=0)  # rows up to here are handled: where a restart resumes
    registered = IntField(default=0)
    already_registered = IntField(default=0)
    rejected = IntField(default=0)
    errors_total = IntField(default=0)
    errors = ListField(DictField())  # {row, column, reason}: no values that are personal data
    notes_total = IntField(default=0)
    notes = ListField(StringField())  # "row 7: already registered as <id>"
    requested_by = StringField()
    communities = ListField(StringField())
    requester_communities = ListField(StringField())  # what the submitter's token reached ("*": all)
    created_at = DateTimeField(default=_now)
    finished_at = DateTimeField()

    def requester_may_see(self, community_id: str) -> bool:
        """The token rule (``Principal.may_see``) applied to the submitter's communities."""
        return Principal(self.requested_by or "", frozenset(), frozenset(self.requester_communities)).may_see(
            community_id)


class ImportRow(Document):
    """A row waiting to be registered; deleted once its import has run (minimum necessary)."""

    meta = {"db_alias": ALIAS, "collection": "import_rows", "indexes": [("import_id", "row")]}

    import_id = StringField(required=True)
    row = IntField(required=True)
    values = DictField()
    errors = ListField(DictField())  # what reading the file found wrong with the row ({row, column, reason})


class ContactAccess(Document):
    """Audit log: who read which fields of whose contact details, for what purpose."""

    meta = {"db_alias": ALIAS, "collection": "contact_audit", "indexes": ["resident_id"]}

    resident_id = StringField(required=True)
    purpose = StringField(required=True)
    caller = StringField()
    fields = ListField(StringField())
    granted = BooleanField(default=True)
    at = DateTimeField(default=_now)


class PermitReminder(Document):
    """That a reminder went out: ``<resident>:<expiry>:<threshold>``, once each."""

    meta = {"db_alias": ALIAS, "collection": "permit_reminders"}

    id = StringField(primary_key=True)
    resident_id = StringField(required=True)
    threshold_days = IntField(required=True)
    sent_on = DateField(required=True)


class ReminderRun(Document):
    """That the daily permit-reminder run happened for a date."""

    meta = {"db_alias": ALIAS, "collection": "permit_reminder_runs"}

    id = StringField(primary_key=True)  # the ISO date
    sent = IntField(default=0)
    at = DateTimeField(default=_now)


def former_key(key: str, value: str) -> str:
    """How a departed resident keeps an identity key: ``document_key:<hash>``, unique no more."""
    return f"{key}:{value}"


ALL_DOCUMENTS = (Resident, ImportJob, ImportRow, ContactAccess, PermitReminder, ReminderRun)
