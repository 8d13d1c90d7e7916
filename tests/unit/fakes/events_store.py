"""An in-memory ``services.events.store.EventsStore``, and an outbox's unit of work to go with it, for unit
tests of the events service's use cases: no broker, no database.

It keeps plain records (what the database would hold) and hands out fresh mongoengine documents built
from them, as the real store does; it enforces the same unique keys ((event, resident) and the door
code of a registration, the id of a feedback). ``FakeUnitOfWork.transaction`` gives the records back
as they were when the work raises, as an aborted transaction would.
"""
from __future__ import annotations

import copy
from datetime import datetime

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from services.events.documents import Event, Feedback, Registration
from tests.unit import fakes


def _key(event_id) -> ObjectId:
    return event_id if isinstance(event_id, ObjectId) else ObjectId(event_id)


def _matches(value, condition) -> bool:
    if not isinstance(condition, dict):
        return value == condition
    tests = {"$gte": lambda a, b: a >= b, "$lte": lambda a, b: a <= b, "$gt": lambda a, b: a > b,
             "$lt": lambda a, b: a < b}
    return all(tests[operator](value, operand) for operator, operand in condition.items())


class FakeEventsStore:
    """``EventsStore``'s interface, kept in dictionaries."""

    def __init__(self):
        self.events: dict[ObjectId, dict] = {}
        self.registrations: dict[ObjectId, dict] = {}
        self.feedback: dict[str, dict] = {}
        self._handed_out: dict[int, tuple[Event, dict]] = {}  # what each event document was when given

    # -- how records become documents ---------------------------------------------------------------

    def _event(self, record: dict | None) -> Event | None:
        if record is None:
            return None
        event = Event(id=record["_id"], **{k: v for k, v in record.items() if k != "_id"})
        self._handed_out[id(event)] = (event, copy.deepcopy(record))
        return event

    @staticmethod
    def _registration(record: dict | None) -> Registration | None:
        if record is None:
            return None
        return Registration(id=record["_id"], **{k: v for k, v in record.items() if k != "_id"})

    @staticmethod
    def _record(document) -> dict:
        document.validate()
        return copy.deepcopy(document.to_mongo().to_dict())

    def _unique_registration(self, record: dict) -> None:
        for other in self.registrations.values():
            if other["_id"] != record["_id"] and (
                    (other["event_id"], other["resident_id"]) == (record["event_id"], record["resident_id"])
                    or other["code"] == record["code"]):
                raise DuplicateKeyError("E11000 duplicate key error collection: registrations")

    # -- events -------------------------------------------------------------------------------------

    def event(self, event_id: str, session=None) -> Event | None:
        if not ObjectId.is_valid(event_id):
            return None
        return self._event(self.events.get(ObjectId(event_id)))

    def events_of(self, community_id: str, since: dict, batch_size: int):
        found = [record for record in self.events.values() if record["community_id"] == community_id
                 and all(_matches(record.get(field), condition) for field, condition in since.items())]
        return [self._event(record) for record in sorted(found, key=lambda r: (r["starts_at"], r["_id"]))]

    def add_event(self, fields: dict) -> str:
        record = {**self._record(Event(**fields)), "_id": ObjectId()}
        self.events[record["_id"]] = record
        return str(record["_id"])

    def draft(self, fields: dict) -> dict:
        return self._record(Event(**fields))

    def add_events(self, records: list[dict], session) -> None:
        for record in records:
            record["_id"] = ObjectId()  # as pymongo's insert_many gives it
            self.events[record["_id"]] = copy.deepcopy(record)

    def save_event(self, event: Event, session) -> None:
        """Only the fields changed since the document was handed out, as ``outbox.save_changes`` writes."""
        _, was = self._handed_out[id(event)]
        now = self._record(event)
        record = self.events[event.id]
        record.update({name: value for name, value in now.items() if was.get(name) != value})

    def venue_clash(self, event: Event, venue: str, starts_at: datetime, ends_at: datetime) -> Event | None:
        for record in self.events.values():
            if (record["community_id"] == event.community_id and record["venue"] == venue
                    and record["status"] == "scheduled" and record["_id"] != event.id
                    and record["starts_at"] < ends_at and record["ends_at"] > starts_at):
                return self._event(record)
        return None

    def add_places(self, event_id, count: int, session) -> None:
        self.events[_key(event_id)]["places_left"] += count

    def take_place(self, event_id, session) -> bool:
        record = self.events.get(_key(event_id))
        if record is None or record["places_left"] <= 0:
            return False
        record["places_left"] -= 1
        return True

    def give_place_back(self, event_id, session) -> None:
        self.add_places(event_id, 1, session)

    def take_place_or_queue(self, event_id: str, session) -> Event | None:
        if not ObjectId.is_valid(event_id) or ObjectId(event_id) not in self.events:
            return None
        record = self.events[ObjectId(event_id)]
        before = copy.deepcopy(record)
        if record["places_left"] > 0:
            record["places_left"] -= 1
        else:
            record["waitlist_seq"] = (record.get("waitlist_seq") or 0) + 1
        return self._event(before)

    # -- registrations ------------------------------------------------------------------------------

    def _first(self, **fields) -> Registration | None:
        return self._registration(next((record for record in self.registrations.values()
                                        if all(record.get(k) == v for k, v in fields.items())), None))

    def registration(self, registration_id, session=None) -> Registration | None:
        return self._first(_id=registration_id)

    def registration_of(self, event_id: str, resident_id: str, session=None) -> Registration | None:
        return self._first(event_id=event_id, resident_id=resident_id)

    def registration_with_code(self, event_id: str, code: str, session=None) -> Registration | None:
        return self._first(event_id=event_id, code=code)

    def anyone_waitlisted(self, event_id: str, session=None) -> bool:
        return self._first(event_id=event_id, status="waitlisted") is not None

    def registrations_in(self, event_id: str, statuses, session) -> list[Registration]:
        return [self._registration(record) for record in self.registrations.values()
                if record["event_id"] == event_id and record["status"] in statuses]

    def register(self, fields: dict, created_at: datetime, active, session) -> Registration | None:
        Registration(**fields).validate()
        existing = next((record for record in self.registrations.values()
                         if (record["event_id"], record["resident_id"]) == (fields["event_id"], fields["resident_id"])
                         and record["status"] not in active), None)
        record = {**(existing or {"_id": ObjectId(), "created_at": created_at}), **copy.deepcopy(fields)}
        try:
            self._unique_registration(record)
        except DuplicateKeyError:
            return None
        self.registrations[record["_id"]] = record
        return self._registration(record)

    def add_registration(self, fields: dict, session):
        record = {**self._record(Registration(**fields)), "_id": ObjectId()}
        self._unique_registration(record)
        self.registrations[record["_id"]] = record
        return record["_id"]

    def set_registration(self, registration_id, changes: dict, session, if_status: str | None = None) -> bool:
        record = self.registrations.get(registration_id)
        if record is None or (if_status is not None and record["status"] != if_status):
            return False
        changed = any(record.get(k) != v for k, v in changes.items())
        record.update(copy.deepcopy(changes))
        return changed

    def offer_first_waitlisted(self, event_id: str, changes: dict, session) -> Registration | None:
        waiting = [record for record in self.registrations.values()
                   if record["event_id"] == event_id and record["status"] == "waitlisted"]
        if not waiting:
            return None
        first = min(waiting, key=lambda record: record["waitlist_seq"])
        first.update(copy.deepcopy(changes))
        return self._registration(first)

    def waitlisted_up_to(self, event_id: str, waitlist_seq: int, session=None) -> int:
        return sum(1 for record in self.registrations.values() if record["event_id"] == event_id
                   and record["status"] == "waitlisted" and record["waitlist_seq"] <= waitlist_seq)

    def offers_expired(self, now: datetime):
        return [self._registration(record) for record in list(self.registrations.values())
                if record["status"] == "offered" and record["confirm_by"] < now]

    def tally(self, event_id: str) -> dict:
        of_event = [record for record in self.registrations.values() if record["event_id"] == event_id]
        return {"registered": sum(1 for r in of_event if r["status"] == "confirmed"),
                "attended": sum(1 for r in of_event if r.get("attended_at") is not None),
                "waitlisted": sum(1 for r in of_event if r.get("waitlist_seq") is not None)}

    # -- feedback -----------------------------------------------------------------------------------

    def add_feedback(self, fields: dict, session) -> bool:
        record = self._record(Feedback(**fields))
        if record["_id"] in self.feedback:
            return False
        self.feedback[record["_id"]] = record
        return True

    def ratings(self, event_id: str) -> list[int]:
        return [record["rating"] for record in self.feedback.values() if record["event_id"] == event_id]


class FakeUnitOfWork(fakes.FakeUnitOfWork):
    """The outbox's unit of work over a ``FakeEventsStore`` (``tests.unit.fakes.FakeUnitOfWork``)."""

    tables = ("events", "registrations", "feedback")
