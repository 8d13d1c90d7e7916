"""Where the events service keeps its events, registrations and feedback: every query its use cases make.

``EventsStore`` is the repository the use cases are handed (``calendar``, ``registrations``, ``ingest``;
the service holds one, as it holds its outbox), so they run against an in-memory store in a unit test
(tests/unit/fakes/events_store.py). It gives and takes the mongoengine documents of ``documents.py``
as plain values; ``session`` is the caller's transaction (from the outbox's ``transaction``), and a
read given one sees that transaction's own writes. Every method is one database command unless it
says otherwise; the commands per registration are a budget (tests/integration/test_events_budget.py).
"""
from __future__ import annotations

from datetime import datetime

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.common.outbox import insert_document, save_changes
from services.events.documents import Event, Feedback, Registration

LISTING_ORDER = [("starts_at", 1), ("_id", 1)]  # the index (community_id, starts_at, _id)

# One write takes a place if one is left, else the next waitlist number; both expressions read the
# document as it was, so the one returned before the change tells which happened.
_PLACE_OR_WAITLIST = [{"$set": {
    "places_left": {"$cond": [{"$gt": ["$places_left", 0]}, {"$subtract": ["$places_left", 1]}, "$places_left"]},
    "waitlist_seq": {"$cond": [{"$gt": ["$places_left", 0]}, "$waitlist_seq",
                               {"$add": [{"$ifNull": ["$waitlist_seq", 0]}, 1]}]},
}}]


def _event_key(event_id) -> ObjectId:
    return event_id if isinstance(event_id, ObjectId) else ObjectId(event_id)


class EventsStore:
    """The events service's repository (stateless: one serves every worker)."""

    # -- events -------------------------------------------------------------------------------------

    def event(self, event_id: str, session=None) -> Event | None:
        """The event (None if there is none, or the id is not one)."""
        if not ObjectId.is_valid(event_id):
            return None
        found = Event._get_collection().find_one({"_id": ObjectId(event_id)}, session=session)
        return Event._from_son(found) if found else None

    def events_of(self, community_id: str, since: dict, batch_size: int):
        """A community's events in ``LISTING_ORDER`` from ``since`` (``paging.window``), read lazily."""
        return Event.objects(community_id=community_id, __raw__=since).order_by("starts_at", "id") \
            .batch_size(batch_size)

    def add_event(self, fields: dict) -> str:
        event = Event(**fields)
        event.save()
        return str(event.id)

    def draft(self, fields: dict) -> dict:
        """The record of a new event, checked; ``add_events`` gives it its ``_id``. No command."""
        draft = Event(**fields)
        draft.validate()
        return draft.to_mongo().to_dict()

    def add_events(self, records: list[dict], session) -> None:
        Event._get_collection().insert_many(records, session=session)

    def save_event(self, event: Event, session) -> None:
        """The event's changed fields."""
        save_changes(event, session)

    def venue_clash(self, event: Event, venue: str, starts_at: datetime, ends_at: datetime) -> Event | None:
        """Another scheduled event of the event's community at ``venue`` at overlapping times, if any."""
        return Event.objects(community_id=event.community_id, venue=venue, status="scheduled",
                             id__ne=event.id, starts_at__lt=ends_at, ends_at__gt=starts_at).first()

    def add_places(self, event_id, count: int, session) -> None:
        Event._get_collection().update_one({"_id": _event_key(event_id)}, {"$inc": {"places_left": count}},
                                           session=session)

    def take_place(self, event_id, session) -> bool:
        """One place, if one is left (atomically: the race for the last place has one winner)."""
        taken = Event._get_collection().update_one({"_id": _event_key(event_id), "places_left": {"$gt": 0}},
                                                    {"$inc": {"places_left": -1}}, session=session)
        return taken.modified_count == 1

    def give_place_back(self, event_id, session) -> None:
        self.add_places(event_id, 1, session)

    def take_place_or_queue(self, event_id: str, session) -> Event | None:
        """A place if one is left, else the next waitlist number, in one write; the event as it was
        before (its ``places_left`` says which happened), or None if there is no such event."""
        if not ObjectId.is_valid(event_id):
            return None
        before = Event._get_collection().find_one_and_update(
            {"_id": ObjectId(event_id)}, _PLACE_OR_WAITLIST, return_document=ReturnDocument.BEFORE, session=session)
        return Event._from_son(before) if before else None

    # -- registrations ------------------------------------------------------------------------------

    def registration(self, registration_id, session=None) -> Registration | None:
        return self._registration({"_id": registration_id}, session)

    def registration_of(self, event_id: str, resident_id: str, session=None) -> Registration | None:
        return self._registration({"event_id": event_id, "resident_id": resident_id}, session)

    def registration_with_code(self, event_id: str, code: str, session=None) -> Registration | None:
        return self._registration({"event_id": event_id, "code": code}, session)

    def anyone_waitlisted(self, event_id: str, session=None) -> bool:
        return self._registration({"event_id": event_id, "status": "waitlisted"}, session) is not None

    def _registration(self, query: dict, session) -> Registration | None:
        found = Registration._get_collection().find_one(query, session=session)
        return Registration._from_son(found) if found else None

    def registrations_in(self, event_id: str, statuses, session) -> list[Registration]:
        found = Registration._get_collection().find({"event_id": event_id, "status": {"$in": list(statuses)}},
                                                    session=session)
        return [Registration._from_son(registration) for registration in found]

    def register(self, fields: dict, created_at: datetime, active, session) -> Registration | None:
        """``fields`` as the resident's registration for the event: new, or over one whose status is not
        ``active`` (a cancelled one comes back to life); None if an ``active`` one exists (its unique key)."""
        Registration(**fields).validate()
        try:
            stored = Registration._get_collection().find_one_and_update(
                {"event_id": fields["event_id"], "resident_id": fields["resident_id"],
                 "status": {"$nin": list(active)}},
                {"$set": fields, "$setOnInsert": {"created_at": created_at}},
                upsert=True, return_document=ReturnDocument.AFTER, session=session)
        except DuplicateKeyError:
            return None
        return Registration._from_son(stored)

    def add_registration(self, fields: dict, session):
        """A new registration; returns its id."""
        return insert_document(Registration(**fields), session)["_id"]

    def set_registration(self, registration_id, changes: dict, session, if_status: str | None = None) -> bool:
        """``changes`` made, if the registration's status is still ``if_status`` (when given)."""
        query = {"_id": registration_id} if if_status is None else {"_id": registration_id, "status": if_status}
        return Registration._get_collection().update_one(query, {"$set": changes}, session=session) \
            .modified_count == 1

    def offer_first_waitlisted(self, event_id: str, changes: dict, session) -> Registration | None:
        """``changes`` made to the event's first waitlisted registration (by waitlist number), if any."""
        offered = Registration._get_collection().find_one_and_update(
            {"event_id": event_id, "status": "waitlisted"}, {"$set": changes},
            sort=[("waitlist_seq", 1)], return_document=ReturnDocument.AFTER, session=session)
        return Registration._from_son(offered) if offered else None

    def waitlisted_up_to(self, event_id: str, waitlist_seq: int, session=None) -> int:
        """How many of the event's waitlisted registrations have a waitlist number up to ``waitlist_seq``."""
        return Registration._get_collection().count_documents(
            {"event_id": event_id, "status": "waitlisted", "waitlist_seq": {"$lte": waitlist_seq}}, session=session)

    def offers_expired(self, now: datetime):
        """Offers whose ``confirm_by`` passed, read lazily."""
        return Registration.objects(status="offered", confirm_by__lt=now)

    def tally(self, event_id: str) -> dict:
        """How many registrations of the event are confirmed, attended, were ever waitlisted (three counts)."""
        registrations = Registration.objects(event_id=event_id)
        return {"registered": registrations.filter(status="confirmed").count(),
                "attended": registrations.filter(attended_at__ne=None).count(),
                "waitlisted": registrations.filter(waitlist_seq__ne=None).count()}

    # -- feedback -----------------------------------------------------------------------------------

    def add_feedback(self, fields: dict, session) -> bool:
        """The attendee's rating; False if they have rated the event already (its id is theirs)."""
        try:
            insert_document(Feedback(**fields), session)
        except DuplicateKeyError:
            return False
        return True

    def ratings(self, event_id: str) -> list[int]:
        return [feedback.rating for feedback in Feedback.objects(event_id=event_id).only("rating")]
