"""What notifications knows of an event to write about it: titles (both languages), venue, times,
capacity, community — the ``details`` of its document in the ``events`` view.

The messages of events carry ids, times and counts but no title or venue, so the details are read
from the events service (RPC ``events.get``) once per event: when ``event.scheduled`` or
``event.changed`` is handled (a change may move the venue), or by the first batch that needs an
event the view does not know yet (a registration handled before its event's scheduling). The
answer is stored in the view, so a registration reads the view, not the events service.

A stale answer never overwrites a fresh one: each read happens inside the handler's transaction,
after its snapshot was taken; a change written meanwhile by another handler makes this
transaction's write to the same document conflict, and the retry reads again.
"""
from __future__ import annotations

from typing import Callable, Iterable

from pymongo import UpdateOne

from services.notifications.store import EVENTS

DETAIL_FIELDS = ("id", "community_id", "category", "title", "venue", "time_zone", "capacity", "starts_at", "ends_at")


def trimmed(answer: dict) -> dict:
    """Of the events service's view of an event, what notifications writes with."""
    return {name: answer.get(name) for name in DETAIL_FIELDS}


def stored(db, event_ids: list[str], session=None) -> dict[str, dict]:
    """The details the view holds of ``event_ids``, in one round trip; events without any are left out."""
    found = db[EVENTS].find({"_id": {"$in": event_ids}, "details": {"$ne": None}}, {"details": 1},
                            session=session).batch_size(len(event_ids) + 1)
    return {doc["_id"]: doc["details"] for doc in found}


def remember(db, details: dict[str, dict], session=None) -> None:
    """``{event id: details}`` into the view, in one round trip."""
    if details:
        db[EVENTS].bulk_write([UpdateOne({"_id": event_id}, {"$set": {"details": facts}}, upsert=True)
                               for event_id, facts in details.items()], ordered=False, session=session)


class EventDetails:
    """The details of events for one handler's batch: from the view, else (once per event) from the
    events service, stored in the view in the handler's transaction (``session``)."""

    def __init__(self, db, session, fetch: Callable[[str], dict]):
        self.db, self.session, self.fetch = db, session, fetch
        self._known: dict[str, dict] = {}

    def __call__(self, event_id: str) -> dict:
        return self.many([event_id])[event_id]

    def many(self, event_ids: Iterable[str]) -> dict[str, dict]:
        """``{event id: details}`` of ``event_ids``: one read of the view for those not yet seen."""
        wanted = sorted(set(event_ids))
        unseen = [event_id for event_id in wanted if event_id not in self._known]
        if unseen:
            self._known.update(stored(self.db, unseen, self.session))
            self._known.update(self.refresh([event_id for event_id in unseen if event_id not in self._known]))
        return {event_id: self._known[event_id] for event_id in wanted}

    def refresh(self, event_ids: Iterable[str]) -> dict[str, dict]:
        """Read ``event_ids`` from the events service (one RPC each) and store them in the view."""
        fetched = {event_id: trimmed(self.fetch(event_id)) for event_id in event_ids}
        remember(self.db, fetched, self.session)
        self._known.update(fetched)
        return fetched
