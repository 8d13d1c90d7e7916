"""Registration use cases: register (or waitlist), cancel and promote, confirm, check in, rate.

Each takes the service's store (``store.EventsStore``, or a fake in a unit test) and runs in the
caller's transaction (``session``, from the outbox's ``transaction``): its writes go through the
store with ``session`` and what it ``publish``es is staged in the outbox beside them.
"""
from __future__ import annotations

import secrets
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from weakref import WeakValueDictionary

from contracts import (
    ATTENDANCE_RECORDED,
    FEEDBACK_SUBMITTED,
    REGISTRATION_CANCELLED,
    REGISTRATION_CONFIRMED,
    REGISTRATION_PROMOTED,
    REGISTRATION_WAITLISTED,
)
from services.common.messaging import fact_id
from services.common.web import NotFound
from services.events import domain
from services.events.calendar import aware

if TYPE_CHECKING:
    from services.events.documents import Event, Registration

ACTIVE = domain.ACTIVE_REGISTRATION
CHECKIN_OPENS_BEFORE = timedelta(hours=2)


_event_locks: WeakValueDictionary = WeakValueDictionary()  # a lock lives while someone holds or awaits it
_event_locks_guard = threading.Lock()


@contextmanager
def one_at_a_time(event_id: str):
    """Registrations of one event, one transaction at a time in this process. Each writes the event's
    document first; a second transaction writing it before the first commits would be aborted
    (a write conflict) and retried, again and again while the first runs. Waiting costs less.
    (Instances of the service in other processes still conflict, and pymongo retries those.)"""
    with _event_locks_guard:
        lock = _event_locks.setdefault(event_id, threading.Lock())
    with lock:
        yield


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _facts(registration: Registration) -> dict:
    return {"registration_id": str(registration.id), "event_id": registration.event_id,
            "resident_id": registration.resident_id, "community_id": registration.community_id}


def _event_dict(event: Event) -> dict:
    return {"status": event.status, "starts_at": aware(event.starts_at),
            "registration_opens_at": aware(event.registration_opens_at),
            "registration_closes_at": aware(event.registration_closes_at),
            "audience": event.audience, "audience_tags": list(event.audience_tags),
            "community_id": event.community_id}


def _place_or_waitlist(store, session, event_id: str) -> tuple[Event, str, int | None]:
    """The event as it was, and ``("confirmed", None)`` or ``("waitlisted", its waitlist number)``."""
    before = store.take_place_or_queue(event_id, session)
    if before is None:
        raise NotFound(f"no event with id {event_id}")
    if before.places_left > 0:
        return before, "confirmed", None
    return before, "waitlisted", (before.waitlist_seq or 0) + 1


def register(store, session, publish, event_id: str, resident: dict) -> tuple[Registration, int | None]:
    """A place if one is left, else a place on the waitlist; returns the registration and its waitlist
    position. ``resident`` is the residents service's view. In the caller's transaction (``session``),
    whose first write is the event's: a refusal gives what was taken back by the abort."""
    event, status, seq = _place_or_waitlist(store, session, event_id)
    domain.require_registration_open(_event_dict(event), _now())
    domain.require_in_audience(_event_dict(event), resident)
    fields = {"event_id": event_id, "resident_id": resident["id"], "community_id": resident["community_id"],
              "status": status, "waitlist_seq": seq, "confirm_by": None, "attended_at": None,
              "code": secrets.token_urlsafe(9), "updated_at": _now()}
    registration = store.register(fields, _now(), ACTIVE, session)  # new, or a cancelled one come back to life
    if registration is None:
        raise domain.RuleBroken("already_registered", "this resident is already registered for this event")
    position = waitlist_position(store, registration, session)
    if status == "confirmed":
        publish(REGISTRATION_CONFIRMED, _facts(registration), subject=registration.resident_id,
                community=event.community_id)
    else:
        publish(REGISTRATION_WAITLISTED, {**_facts(registration), "waitlist_position": position},
                subject=registration.resident_id, community=event.community_id)
    return registration, position


def waitlist_position(store, registration: Registration, session=None) -> int | None:
    if registration.status != "waitlisted":
        return None
    return store.waitlisted_up_to(registration.event_id, registration.waitlist_seq, session)


def cancel(store, session, publish, promotion_window: timedelta, registration: Registration,
           reason: str = "by_resident") -> None:
    """End a registration; a place it held goes to the first on the waitlist."""
    before = registration.status
    if before not in ACTIVE:
        raise domain.RuleBroken("not_registered", f"this registration is already {before}")
    ended = "expired" if reason == "promotion_expired" else "cancelled"
    if not store.set_registration(registration.id, {"status": ended, "updated_at": _now()}, session, if_status=before):
        raise domain.RuleBroken("changed_concurrently", "this registration changed meanwhile; read it again")
    publish(REGISTRATION_CANCELLED, {**_facts(registration), "reason": reason}, subject=registration.resident_id,
            community=registration.community_id, message_id=fact_id("registration.ended", registration.id, before))
    if before in ("confirmed", "offered") and reason != "event_cancelled":
        pass_place_on(store, session, publish, promotion_window, registration.event_id)


def pass_place_on(store, session, publish, promotion_window: timedelta, event_id: str) -> None:
    """Offer a freed place to the first waitlisted resident, or free it."""
    confirm_by = _now() + promotion_window
    registration = store.offer_first_waitlisted(
        str(event_id), {"status": "offered", "confirm_by": confirm_by, "updated_at": _now()}, session)
    if registration is None:
        store.give_place_back(event_id, session)
        return
    publish(REGISTRATION_PROMOTED, {**_facts(registration), "confirm_by": confirm_by},
            subject=registration.resident_id, community=registration.community_id)


def fill_from_waitlist(store, session, publish, promotion_window: timedelta, event_id: str) -> None:
    """New places (a larger capacity) go to the waitlist first, not to whoever registers next."""
    while store.anyone_waitlisted(str(event_id), session) and store.take_place(event_id, session):
        pass_place_on(store, session, publish, promotion_window, event_id)


def confirm_offer(store, session, publish, registration: Registration) -> None:
    if registration.status != "offered":
        raise domain.RuleBroken("no_offer", f"this registration is {registration.status}, not offered a place")
    if aware(registration.confirm_by) < _now():
        raise domain.RuleBroken("offer_expired", "the offer expired; the place has passed on")
    if not store.set_registration(registration.id, {"status": "confirmed", "updated_at": _now()}, session,
                                  if_status="offered"):
        raise domain.RuleBroken("changed_concurrently", "this registration changed meanwhile; read it again")
    publish(REGISTRATION_CONFIRMED, _facts(registration), subject=registration.resident_id,
            community=registration.community_id, message_id=fact_id("registration.confirmed", registration.id, "offer"))


def expire_offers(store, stage, promotion_window: timedelta) -> int:
    """Offers not confirmed in time pass on to the next on the waitlist, each in its own transaction
    (``stage``: the outbox); returns how many expired."""
    expired = 0
    for registration in store.offers_expired(_now()):
        try:
            stage.transaction(lambda session, publish: cancel(store, session, publish, promotion_window,
                                                              registration, "promotion_expired"))
        except domain.RuleBroken:
            continue  # confirmed or cancelled meanwhile
        expired += 1
    return expired


def check_in(store, session, publish, event: Event, *, resident: dict | None = None,
             code: str | None = None) -> Registration:
    """Record attendance by resident id (a walk-in takes a place if one is left) or by the door code."""
    now = _now()
    if event.status != "scheduled":
        raise domain.RuleBroken("event_not_open", f"the event is {event.status}")
    if not aware(event.starts_at) - CHECKIN_OPENS_BEFORE <= now <= aware(event.ends_at):
        raise domain.RuleBroken("checkin_closed", "check-in is open from two hours before the start to the end")
    if code is not None:
        registration = store.registration_with_code(str(event.id), code, session)
        if registration is None:
            raise NotFound("no registration for this event has that code")
        method = "code"
    else:
        registration = store.registration_of(str(event.id), resident["id"], session)
        method = "resident_id"
        if registration is None or registration.status != "confirmed":
            registration = _walk_in(store, session, event, resident, registration)
            method = "walk_in"
    if registration.status != "confirmed":
        raise domain.RuleBroken("no_place", f"this registration is {registration.status}, not a confirmed place")
    if registration.attended_at is None:
        store.set_registration(registration.id, {"attended_at": now, "checkin_method": method}, session)
        registration = store.registration(registration.id, session)
        publish(ATTENDANCE_RECORDED, {**_facts(registration), "method": method}, subject=registration.resident_id,
                community=registration.community_id, message_id=fact_id("attendance", registration.id))
    return registration


def _walk_in(store, session, event: Event, resident: dict, registration: Registration | None) -> Registration:
    domain.require_in_audience(_event_dict(event), resident)
    if not store.take_place(event.id, session):
        raise domain.RuleBroken("event_full", "the event is full; no walk-in places are left")
    fields = {"status": "confirmed", "waitlist_seq": None, "confirm_by": None, "updated_at": _now()}
    if registration is not None:
        store.set_registration(registration.id, fields, session)
        return store.registration(registration.id, session)
    registration_id = store.add_registration({"event_id": str(event.id), "resident_id": resident["id"],
                                              "community_id": resident["community_id"],
                                              "code": secrets.token_urlsafe(9), **fields}, session)
    return store.registration(registration_id, session)


def rate(store, session, publish, event: Event, resident_id: str, rating: int, comment: str | None) -> None:
    if event.status != "completed" and aware(event.ends_at) > _now():
        raise domain.RuleBroken("event_not_over", "feedback opens when the event is over")
    registration = store.registration_of(str(event.id), resident_id, session)
    if registration is None or registration.attended_at is None:
        raise domain.RuleBroken("not_an_attendee", "only residents who attended can rate the event", 403)
    if not store.add_feedback({"id": f"{event.id}:{resident_id}", "event_id": str(event.id),
                               "resident_id": resident_id, "rating": rating, "comment": comment}, session):
        raise domain.RuleBroken("already_rated", "this attendee has rated the event already")
    publish(FEEDBACK_SUBMITTED, {"event_id": str(event.id), "resident_id": resident_id,
                                 "community_id": registration.community_id, "category": event.category,
                                 "rating": rating, "has_comment": bool(comment)},
            subject=resident_id, community=event.community_id,
            message_id=fact_id("feedback", event.id, resident_id))


def feedback_summary(store, event: Event) -> dict:
    return {"event_id": str(event.id), **domain.rating_summary(store.ratings(str(event.id)))}


def view(store, registration: Registration, position: int | None = None) -> dict:
    """``position``: the waitlist position, if the caller knows it; else it is counted."""
    return {
        "id": str(registration.id), "event_id": registration.event_id, "resident_id": registration.resident_id,
        "status": registration.status, "waitlist_position": position or waitlist_position(store, registration),
        "confirm_by": aware(registration.confirm_by).isoformat() if registration.confirm_by else None,
        "code": registration.code, "attended": registration.attended_at is not None,
    }

