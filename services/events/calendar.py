"""Event use cases: create (one or a weekly series), change, schedule, cancel, complete.

Each takes the service's store (``store.EventsStore``, or a fake in a unit test); those that
announce something run in the caller's transaction (``session``), their messages staged in the
outbox beside the change (``publish``)."""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bson import ObjectId
from marshmallow import RAISE, fields

from contracts import EVENT_CANCELLED, EVENT_CHANGED, EVENT_COMPLETED, EVENT_SCHEDULED
from services.common.messaging import fact_id
from services.common.paging import PageQuery, page, window
from services.common.web import NotFound
from services.events import domain
from services.events.store import LISTING_ORDER

if TYPE_CHECKING:
    from services.events.documents import Event

ANNOUNCED_CHANGES = ("starts_at", "ends_at", "venue", "capacity", "registration_closes_at")


class ListEvents(PageQuery):
    """``GET /events``: a community's events by start time, a page at a time."""

    class Meta:
        unknown = RAISE

    community_id = fields.String(required=True)
    lang = fields.String(load_default="zh-CN")


def listing(store, query: dict) -> dict:
    since, keep = window(LISTING_ORDER, query.get("after"))
    events, after = page(store.events_of(query["community_id"], since, batch_size=query["limit"] + 1),
                         query["limit"], key=lambda event: (event.starts_at, event.id), keep=keep)
    return {"items": [view(event, query["lang"]) for event in events], "next": after}


def find(store, event_id: str, session=None) -> Event:
    """The event; in ``session``'s transaction as that transaction sees it."""
    found = store.event(event_id, session)
    if found is None:
        raise NotFound(f"no event with id {event_id}")
    return found


@functools.lru_cache(maxsize=10_000)
def community_of(store, event_id: str) -> str:
    """The event's community, which never changes: read once, then kept (an unknown event raises, uncached)."""
    return find(store, event_id).community_id


def create(store, command: dict) -> list[str]:
    """A draft event, or a draft series of weekly occurrences; returns their ids in order."""
    recurrence = command.pop("recurrence", None)
    times = [(command["starts_at"], command["ends_at"])]
    if recurrence:
        times = domain.occurrences(command["starts_at"], command["ends_at"], recurrence["count"])
    series_id = str(ObjectId()) if recurrence else None
    ids = []
    for number, (starts_at, ends_at) in enumerate(times, start=1):
        shift = starts_at - command["starts_at"]
        fields = {**command, "starts_at": starts_at, "ends_at": ends_at, "places_left": command["capacity"],
                  "series_id": series_id, "occurrence": number if series_id else None}
        for name in ("registration_opens_at", "registration_closes_at"):
            if command.get(name):
                fields[name] = command[name] + shift
        ids.append(store.add_event(fields))
    return ids


def facts(event: Event) -> dict:
    return {
        "event_id": str(event.id), "community_id": event.community_id, "category": event.category,
        "starts_at": aware(event.starts_at), "ends_at": aware(event.ends_at), "capacity": event.capacity,
        "audience": event.audience, "audience_tags": list(event.audience_tags), "series_id": event.series_id,
    }


def aware(moment: datetime | None) -> datetime | None:
    """Mongo gives back UTC; say so."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def as_dict(event: Event) -> dict:
    data = {name: getattr(event, name) for name in domain.EventFields().fields}
    data.update(community_id=event.community_id, status=event.status)
    for name in domain.TIMES:
        data[name] = aware(data[name])
    return data


def require_venue_free(store, event: Event, venue: str, starts_at: datetime, ends_at: datetime) -> None:
    """Two scheduled events of a community cannot share a venue at overlapping times."""
    clash = store.venue_clash(event, venue, starts_at, ends_at)
    if clash is not None:
        raise domain.RuleBroken("venue_taken", f"{venue} is taken by event {clash.id} at overlapping times")


def schedule(store, session, publish, event_id: str) -> None:
    event = find(store, event_id, session)
    domain.require_transition(event.status, "scheduled")
    if aware(event.starts_at) <= datetime.now(timezone.utc):
        raise domain.RuleBroken("event_in_the_past", "an event that has started cannot be scheduled")
    require_venue_free(store, event, event.venue, event.starts_at, event.ends_at)
    event.status = "scheduled"
    store.save_event(event, session)
    publish(EVENT_SCHEDULED, facts(event), subject=str(event.id), community=event.community_id,
            message_id=fact_id("event.scheduled", event.id))


def change(store, session, publish, event: Event, changes: dict) -> list[str]:
    if event.status not in ("draft", "scheduled"):
        raise domain.RuleBroken("event_closed", f"a {event.status} event cannot be changed")
    current = as_dict(event)
    changed = {k: v for k, v in changes.items() if current.get(k) != v}
    if not changed:
        return []
    domain.check_consistency({**current, **changed})  # ValidationError -> 400
    if event.status == "scheduled" and {"starts_at", "ends_at", "venue"} & set(changed):
        require_venue_free(store, event, changed.get("venue", event.venue), changed.get("starts_at", event.starts_at),
                           changed.get("ends_at", event.ends_at))
    if "capacity" in changed:
        held = event.capacity - event.places_left
        if changed["capacity"] < held:
            raise domain.RuleBroken("capacity_below_registrations",
                                    f"{held} places are taken; the capacity cannot go below that")
        store.add_places(event.id, changed["capacity"] - event.capacity, session)
    for name, value in changed.items():
        setattr(event, name, value)
    event.updated_at = datetime.now(timezone.utc)
    store.save_event(event, session)
    event = find(store, str(event.id), session)
    announced = sorted(set(changed) & set(ANNOUNCED_CHANGES))
    if event.status == "scheduled" and announced:
        publish(EVENT_CHANGED, {**facts(event), "changed_fields": announced}, subject=str(event.id),
                community=event.community_id)
    return sorted(changed)


def cancel(store, session, publish, cancel_registration, event_id: str) -> None:
    """``cancel_registration(store, session, publish, registration, reason)`` ends each registration, in this
    transaction."""
    event = find(store, event_id, session)
    domain.require_transition(event.status, "cancelled")
    was_scheduled = event.status == "scheduled"
    event.status = "cancelled"
    store.save_event(event, session)
    for registration in store.registrations_in(str(event.id), domain.ACTIVE_REGISTRATION, session):
        cancel_registration(store, session, publish, registration, "event_cancelled")
    if was_scheduled:
        publish(EVENT_CANCELLED, {k: facts(event)[k] for k in ("event_id", "community_id", "category", "starts_at")},
                subject=str(event.id), community=event.community_id, message_id=fact_id("event.cancelled", event.id))


def complete(store, session, publish, event_id: str) -> None:
    event = find(store, event_id, session)
    domain.require_transition(event.status, "completed")
    if aware(event.starts_at) > datetime.now(timezone.utc):
        raise domain.RuleBroken("event_not_started", "an event is completed once it has started")
    event.status = "completed"
    store.save_event(event, session)
    publish(
        EVENT_COMPLETED,
        {**{k: facts(event)[k] for k in ("event_id", "community_id", "category", "starts_at")},
         **store.tally(str(event.id))},
        subject=str(event.id), community=event.community_id, message_id=fact_id("event.completed", event.id),
    )


def local_iso(event: Event, moment: datetime | None) -> str | None:
    """A time as the event's community reads it (Asia/Shanghai: +08:00)."""
    return aware(moment).astimezone(ZoneInfo(event.time_zone)).isoformat() if moment else None


def view(event: Event, language: str = "zh-CN") -> dict:
    return {
        "id": str(event.id), "community_id": event.community_id, "organiser": event.organiser,
        "category": event.category, "title": dict(event.title), "description": dict(event.description or {}),
        "display_title": domain.title_in(event.title, language), "venue": event.venue,
        "time_zone": event.time_zone, "status": event.status, "capacity": event.capacity,
        "places_left": event.places_left, "audience": event.audience, "audience_tags": list(event.audience_tags),
        "series_id": event.series_id, "occurrence": event.occurrence,
        **{name: local_iso(event, getattr(event, name)) for name in domain.TIMES},
    }
