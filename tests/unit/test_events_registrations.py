"""The registration rules of the events service, run against an in-memory store (no broker, no database):
a place while places are left, the waitlist after, one active registration per resident and event, and
a freed place offered to the first waiting, passed on when the offer expires."""
from datetime import datetime, timedelta, timezone

import pytest

from services.events import calendar, domain, registrations
from tests.unit.fakes.events_store import FakeEventsStore, FakeUnitOfWork

WINDOW = timedelta(hours=24)  # how long a promoted resident has to confirm


def resident(name: str) -> dict:
    return {"id": name, "community_id": "tongzilin", "status": "active", "tags": []}


@pytest.fixture
def uow():
    return FakeUnitOfWork(FakeEventsStore())


def scheduled_event(uow, capacity: int) -> str:
    starts_at = datetime.now(timezone.utc) + timedelta(days=10)
    command = domain.CreateEvent().load({
        "community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "food",
        "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "桐梓林社区广场",
        "starts_at": starts_at.isoformat(), "ends_at": (starts_at + timedelta(hours=4)).isoformat(),
        "capacity": capacity, "audience": "any_community"})
    [event_id] = calendar.create(uow.store, command)
    uow.run(calendar.schedule, event_id)
    uow.published.clear()
    return event_id


def register(uow, event_id: str, name: str) -> dict:
    registration, position = uow.run(registrations.register, event_id, resident(name))
    return registrations.view(uow.store, registration, position)


def cancel(uow, event_id: str, name: str) -> None:
    registration = uow.store.registration_of(event_id, name)
    uow.run(registrations.cancel, WINDOW, registration, "by_resident")


def status_of(uow, event_id: str, name: str) -> str:
    return uow.store.registration_of(event_id, name).status


def places_left(uow, event_id: str) -> int:
    return calendar.find(uow.store, event_id).places_left


def published(uow) -> list[tuple[str, str]]:
    return [(message_type, data["resident_id"]) for message_type, data, _ in uow.published]



def test_a_resident_gets_a_place_while_places_are_left(uow):
    event_id = scheduled_event(uow, capacity=2)
    first, second = register(uow, event_id, "甲"), register(uow, event_id, "乙")
    assert (first["status"], first["waitlist_position"]) == ("confirmed", None)
    assert (second["status"], second["waitlist_position"]) == ("confirmed", None)
    assert places_left(uow, event_id) == 0
    assert published(uow) == [("registration.confirmed", "甲"), ("registration.confirmed", "乙")]


def test_a_full_event_waitlists_residents_in_the_order_they_came(uow):
    event_id = scheduled_event(uow, capacity=1)
    register(uow, event_id, "甲")
    second, third = register(uow, event_id, "乙"), register(uow, event_id, "丙")
    assert (second["status"], second["waitlist_position"]) == ("waitlisted", 1)
    assert (third["status"], third["waitlist_position"]) == ("waitlisted", 2)
    assert places_left(uow, event_id) == 0
    waitlisted = [data for message_type, data, _ in uow.published if message_type == "registration.waitlisted"]
    assert [(d["resident_id"], d["waitlist_position"]) for d in waitlisted] == [("乙", 1), ("丙", 2)]


@pytest.mark.parametrize("ahead", [[], ["乙"]], ids=["confirmed", "waitlisted"])
def test_a_resident_registered_already_is_refused_and_takes_nothing(uow, ahead):
    event_id = scheduled_event(uow, capacity=1)
    for name in ahead:
        register(uow, event_id, name)
    assert register(uow, event_id, "甲")["status"] == ("waitlisted" if ahead else "confirmed")
    before = (places_left(uow, event_id), uow.store.events[calendar.find(uow.store, event_id).id]["waitlist_seq"])
    with pytest.raises(domain.RuleBroken) as refused:
        register(uow, event_id, "甲")
    assert (refused.value.code, refused.value.message) == (
        "already_registered", "this resident is already registered for this event")
    assert (places_left(uow, event_id), uow.store.events[calendar.find(uow.store, event_id).id]["waitlist_seq"]) \
        == before
    assert len(uow.store.registrations) == 1 + len(ahead)
    assert len(uow.published) == 1 + len(ahead)


def test_a_resident_who_cancelled_may_register_again(uow):
    event_id = scheduled_event(uow, capacity=1)
    first = register(uow, event_id, "甲")
    cancel(uow, event_id, "甲")
    assert status_of(uow, event_id, "甲") == "cancelled"
    again = register(uow, event_id, "甲")
    assert again["status"] == "confirmed"
    assert again["id"] == first["id"]  # the same registration, come back to life
    assert places_left(uow, event_id) == 0


def test_a_cancelled_place_is_offered_to_the_first_on_the_waitlist(uow):
    event_id = scheduled_event(uow, capacity=1)
    for name in ("甲", "乙", "丙"):
        register(uow, event_id, name)
    uow.published.clear()
    cancel(uow, event_id, "甲")
    offered = uow.store.registration_of(event_id, "乙")
    assert offered.status == "offered"
    assert calendar.aware(offered.confirm_by) > datetime.now(timezone.utc) + WINDOW - timedelta(minutes=1)
    assert status_of(uow, event_id, "丙") == "waitlisted"
    assert registrations.view(uow.store, uow.store.registration_of(event_id, "丙"))["waitlist_position"] == 1
    assert places_left(uow, event_id) == 0  # the place is the offered resident's, not free
    assert published(uow) == [("registration.cancelled", "甲"), ("registration.promoted", "乙")]


def test_a_cancelled_place_nobody_waits_for_is_free_again(uow):
    event_id = scheduled_event(uow, capacity=1)
    register(uow, event_id, "甲")
    cancel(uow, event_id, "甲")
    assert places_left(uow, event_id) == 1
    assert register(uow, event_id, "乙")["status"] == "confirmed"


def test_an_offer_confirmed_in_time_is_a_place(uow):
    event_id = scheduled_event(uow, capacity=1)
    for name in ("甲", "乙"):
        register(uow, event_id, name)
    cancel(uow, event_id, "甲")
    uow.run(registrations.confirm_offer, uow.store.registration_of(event_id, "乙"))
    assert status_of(uow, event_id, "乙") == "confirmed"


def test_an_offer_not_confirmed_in_time_passes_to_the_next_waiting_then_frees_the_place(uow):
    event_id = scheduled_event(uow, capacity=1)
    for name in ("甲", "乙", "丙"):
        register(uow, event_id, name)
    cancel(uow, event_id, "甲")
    expire_offer_of(uow, event_id, "乙")
    with pytest.raises(domain.RuleBroken) as late:
        uow.run(registrations.confirm_offer, uow.store.registration_of(event_id, "乙"))
    assert late.value.code == "offer_expired"
    uow.published.clear()

    assert registrations.expire_offers(uow.store, uow, WINDOW) == 1
    assert status_of(uow, event_id, "乙") == "expired"
    assert status_of(uow, event_id, "丙") == "offered"
    assert published(uow) == [("registration.cancelled", "乙"), ("registration.promoted", "丙")]
    assert places_left(uow, event_id) == 0

    expire_offer_of(uow, event_id, "丙")
    assert registrations.expire_offers(uow.store, uow, WINDOW) == 1
    assert status_of(uow, event_id, "丙") == "expired"
    assert places_left(uow, event_id) == 1  # nobody left waiting: the place is free
    assert registrations.expire_offers(uow.store, uow, WINDOW) == 0


def expire_offer_of(uow, event_id: str, name: str) -> None:
    """The promotion window of ``name``'s offer has passed."""
    registration = uow.store.registration_of(event_id, name)
    uow.store.registrations[registration.id]["confirm_by"] = datetime.now(timezone.utc) - timedelta(minutes=1)
