"""An in-memory ``ResidentsStore`` (the residents' repository) and outbox (its unit of work), for unit tests
of the residents' use cases: the same interface for residents, the contact audit and permit reminders,
and the rules of the real ones that the use cases rely on (an active resident's identity keys are
unique, as the unique indexes make them; a transaction that fails leaves nothing, what it published
included). Imports and the search are not faked: their tests run against the database."""
from __future__ import annotations

import copy

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from services.residents.documents import Resident
from services.residents.store import IDENTITY_FIELDS

UNIQUE_KEYS = ("document_key", "person_key")


class FakeResidentsStore:
    def __init__(self):
        self.records: dict[ObjectId, dict] = {}  # as stored: ``registry.to_record``'s shape, with ``_id``
        self.audited: list[dict] = []
        self.reminders: dict[str, dict] = {}
        self.daily_runs: dict[str, int] = {}
        self.meanwhile = None  # run once as the next transaction begins: someone else's commit after a look-up

    # -- residents ---------------------------------------------------------------------------

    def resident(self, resident_id):
        record = self.records.get(ObjectId(resident_id)) if ObjectId.is_valid(resident_id) else None
        return None if record is None else _document(record)

    def residents(self, resident_ids):
        return [_document(self.records[ObjectId(i)]) for i in resident_ids
                if ObjectId.is_valid(i) and ObjectId(i) in self.records]

    def add(self, record, session=None):
        record.setdefault("_id", ObjectId())  # as pymongo does, before the write is refused or not
        self._write(dict(record))

    def add_many(self, records, session=None):
        for record in records:
            self.add(record, session)

    def save(self, resident, session=None):
        self._write(resident.to_mongo().to_dict())

    def holding(self, key, values, session=None):
        return [_fields(r) for r in self.records.values() if r.get(key) in values]

    def formerly_holding(self, former_keys, session=None):
        return [_fields(r) for r in self.records.values() if set(r.get("former_identity") or ()) & set(former_keys)]

    def household(self, community_id, household_id):
        return [_document(r) for r in self.records.values()
                if (r["community_id"], r.get("household_id"), r["status"]) == (community_id, household_id, "active")]

    def permits_expiring(self, start, end):
        return [_document(r) for r in self.records.values() if r["status"] == "active" and not r.get("erased_at")
                and r.get("permit_expires_on") and start <= r["permit_expires_on"].date() <= end]

    def begin(self) -> dict:
        """A transaction begins (``FakeOutbox``): what it finds, to be put back if it fails."""
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return copy.deepcopy(self.records)

    def _write(self, record):
        for key in UNIQUE_KEYS:
            if record.get(key) and any(other.get(key) == record[key] for other in self.records.values()
                                       if other["_id"] != record["_id"]):
                raise DuplicateKeyError(f"E11000 duplicate key error: {key}")
        self.records[record["_id"]] = record

    # -- the contact audit, permit reminders -------------------------------------------------------

    def audit(self, access):
        self.audited.append(dict(access))

    def audit_many(self, accesses):
        self.audited.extend(dict(access) for access in accesses)

    def reminder_sent(self, reminder_id):
        return reminder_id in self.reminders

    def add_reminder(self, reminder, session=None):
        if reminder["id"] in self.reminders:
            raise DuplicateKeyError(f"E11000 duplicate key error: {reminder['id']}")
        self.reminders[reminder["id"]] = dict(reminder)

    def daily_run_done(self, day):
        return day in self.daily_runs

    def record_daily_run(self, day, sent):
        self.daily_runs[day] = sent


class FakeOutbox:
    """The outbox's ``transaction(work)``: ``work(session, publish)``; what it published is kept in
    ``published`` once it returns; an error undoes the store's writes and drops what it published."""

    def __init__(self, store: FakeResidentsStore):
        self.store = store
        self.published: list[tuple] = []  # (message_type, data, kwargs)

    _staged = None  # what the transaction running now published

    def transaction(self, work):
        before, self._staged = self.store.begin(), []
        try:
            result = work(object(), lambda message_type, data, **kwargs: self._staged.append(
                (message_type, data, kwargs)))
        except BaseException:
            self.store.records = before
            raise
        else:
            self.published.extend(self._staged)
            return result
        finally:
            self._staged = None

    def stage_many(self, session, messages):
        assert self._staged is not None, "staged in a transaction, never outside one"
        self._staged.extend(messages)


def _document(record: dict) -> Resident:
    return Resident(id=record["_id"], **{k: v for k, v in record.items() if k != "_id"})


def _fields(record: dict) -> dict:
    return {k: v for k, v in record.items() if k == "_id" or k in IDENTITY_FIELDS}
