"""The events service with the real residents service behind its RPC calls."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
import requests
from nameko.standalone.rpc import ServiceRpcProxy

from contracts import parse_envelope
from services.events.service import EventsService
from services.residents.service import ResidentsService
from tests.waiting import until_past

pytestmark = pytest.mark.integration
SCOPES = ["events:read", "events:write", "residents:read", "residents:write"]


def soon(**delta):
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


def festival(**overrides):
    return {"community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "food",
            "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "桐梓林社区广场",
            "starts_at": soon(days=10), "ends_at": soon(days=10, hours=4), "capacity": 2,
            "audience": "community", **overrides}


def start_platform(container_factory, config, free_port, token, events_cls=EventsService):
    """The residents and events services, and a client of their HTTP APIs."""
    urls = {}
    for service_cls in (ResidentsService, events_cls):
        address = f"127.0.0.1:{free_port()}"
        extra = {"PROMOTION_CONFIRM_MINUTES": 0.02} if service_cls is events_cls else {}
        container_factory(service_cls, {**config, "WEB_SERVER_ADDRESS": address, **extra}).start()
        urls[service_cls.name] = f"http://{address}"
    headers = {"Authorization": f"Bearer {token(SCOPES)}"}

    class Platform:
        def events(self, method, path, **kwargs):
            return requests.request(method, urls["events"] + path, headers=headers, **kwargs)

        def resident(self, name, **overrides):
            body = {"community_id": "tongzilin", "name": name, "residence_type": "registered", "nationality": "CN",
                    "preferred_language": "zh-CN", **overrides}
            response = requests.post(urls["residents"] + "/residents", json=body, headers=headers)
            assert response.status_code == 201, response.text
            return response.json()["id"]

        def scheduled_event(self, **overrides):
            [event_id] = self.events("POST", "/events", json=festival(**overrides)).json()["ids"]
            assert self.events("POST", f"/events/{event_id}/schedule").status_code == 200
            return event_id

        def register(self, event_id, resident_id):
            return self.events("POST", f"/events/{event_id}/registrations", json={"resident_id": resident_id})

    return Platform()


@pytest.fixture
def platform(container_factory, config, free_port, token):
    return start_platform(container_factory, config, free_port, token)


def test_lifecycle_and_its_messages(platform, bus_tap):
    tap = bus_tap("events")
    [event_id] = platform.events("POST", "/events", json=festival()).json()["ids"]
    assert platform.events("GET", f"/events/{event_id}").json()["status"] == "draft"
    assert platform.events("POST", f"/events/{event_id}/complete").json()["error"] == "invalid_transition"
    assert platform.events("POST", f"/events/{event_id}/schedule").status_code == 200
    changed = platform.events("PATCH", f"/events/{event_id}", json={"venue": "社区活动中心", "capacity": 5})
    assert changed.json()["changed_fields"] == ["capacity", "venue"]
    bad = platform.events("PATCH", f"/events/{event_id}", json={"ends_at": soon(days=1)})
    assert bad.status_code == 400 and "ends_at" in bad.json()["details"]["fields"]
    assert platform.events("POST", f"/events/{event_id}/cancel").status_code == 200
    assert platform.events("POST", f"/events/{event_id}/schedule").status_code == 409
    messages = tap.messages()
    assert [m["type"] for m in messages] == ["event.scheduled", "event.changed", "event.cancelled"]
    assert messages[1]["data"]["changed_fields"] == ["capacity", "venue"]
    for message in messages:
        parse_envelope(message)  # every published message validates against its contract


def test_waitlist_promotion_confirmation_and_pass_on(platform, bus_tap, config):
    event_id = platform.scheduled_event(capacity=2)
    ids = [platform.resident(f"居民{i}") for i in range(5)]
    results = [platform.register(event_id, rid).json() for rid in ids]
    assert [(r["status"], r["waitlist_position"]) for r in results] == [
        ("confirmed", None), ("confirmed", None), ("waitlisted", 1), ("waitlisted", 2), ("waitlisted", 3)]
    tap = bus_tap("events")

    # A place comes free: the first on the waitlist is offered it, and confirms.
    assert platform.events("DELETE", f"/events/{event_id}/registrations/{ids[0]}").status_code == 200
    offered = platform.events("GET", f"/events/{event_id}/registrations/{ids[2]}").json()
    assert offered["status"] == "offered" and offered["confirm_by"]
    assert platform.events("POST", f"/events/{event_id}/registrations/{ids[2]}/confirm").status_code == 200
    assert platform.events("GET", f"/events/{event_id}/registrations/{ids[3]}").json()["waitlist_position"] == 1

    # Another comes free: the next is offered it, lets the time pass, and it passes on.
    platform.events("DELETE", f"/events/{event_id}/registrations/{ids[1]}")
    until_past(platform.events("GET", f"/events/{event_id}/registrations/{ids[3]}").json()["confirm_by"])
    with ServiceRpcProxy("events", config) as events:
        assert events.expire_offers() == 1
    assert platform.events("GET", f"/events/{event_id}/registrations/{ids[3]}").json()["status"] == "expired"
    assert platform.events("GET", f"/events/{event_id}/registrations/{ids[4]}").json()["status"] == "offered"
    late = platform.events("POST", f"/events/{event_id}/registrations/{ids[3]}/confirm")
    assert late.status_code == 409 and late.json()["error"] == "no_offer"

    types = [m["type"] for m in tap.messages()]
    assert types == ["registration.cancelled", "registration.promoted", "registration.confirmed",
                     "registration.cancelled", "registration.promoted", "registration.cancelled",
                     "registration.promoted"]


def test_racing_for_the_last_place_has_one_winner(platform):
    event_id = platform.scheduled_event(capacity=1)
    ids = [platform.resident(f"参赛者{i}") for i in range(10)]
    pool = eventlet.GreenPool(10)
    statuses = list(pool.imap(lambda rid: platform.register(event_id, rid).json()["status"], ids))
    assert sorted(statuses) == ["confirmed"] + ["waitlisted"] * 9
    assert platform.events("GET", f"/events/{event_id}").json()["places_left"] == 0


def test_registration_refusals_name_the_rule(platform):
    event_id = platform.scheduled_event()
    wang = platform.resident("王秀英")
    assert platform.register(event_id, wang).status_code == 201
    twice = platform.register(event_id, wang)
    assert twice.status_code == 409 and twice.json()["error"] == "already_registered"
    unknown = platform.register(event_id, "0123456789abcdef01234567")
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown_resident"
    other = platform.resident("李四", community_id="tongzilin", tags=[])
    elderly_only = platform.scheduled_event(audience="tagged", audience_tags=["elderly"], venue="老年活动室")
    refused = platform.register(elderly_only, other)
    assert refused.status_code == 422 and refused.json()["error"] == "not_in_audience"
    platform.events("POST", f"/events/{event_id}/cancel")
    closed = platform.register(event_id, other)
    assert closed.status_code == 409 and closed.json()["error"] == "event_not_open"
    assert platform.events("GET", f"/events/{event_id}/registrations/{wang}").json()["status"] == "cancelled"


def test_a_cancelled_registration_can_be_made_again(platform):
    event_id = platform.scheduled_event(capacity=1)
    wang, li = platform.resident("王秀英"), platform.resident("李明")
    first = platform.register(event_id, wang).json()
    assert platform.events("DELETE", f"/events/{event_id}/registrations/{wang}").status_code == 200
    assert platform.register(event_id, li).json()["status"] == "confirmed"
    again = platform.register(event_id, wang)
    assert again.status_code == 201, again.text
    assert (again.json()["id"], again.json()["status"], again.json()["waitlist_position"]) == (
        first["id"], "waitlisted", 1)
    assert again.json()["code"] != first["code"]
    assert platform.register(event_id, wang).json()["error"] == "already_registered"
    assert platform.events("GET", f"/events/{event_id}").json()["places_left"] == 0


def test_check_in_walk_ins_and_feedback(platform, bus_tap):
    starts_at = soon(seconds=2)
    event_id = platform.scheduled_event(capacity=2, starts_at=starts_at, ends_at=soon(hours=2))
    wang, li, zhao = (platform.resident(n) for n in ("王秀英", "李明", "赵雷"))
    code = platform.register(event_id, wang).json()["code"]
    tap = bus_tap("events")
    assert platform.events("POST", f"/events/{event_id}/check-ins", json={"code": code}).json()["attended"]
    walk_in = platform.events("POST", f"/events/{event_id}/check-ins", json={"resident_id": li})
    assert walk_in.status_code == 200 and walk_in.json()["attended"]
    full = platform.events("POST", f"/events/{event_id}/check-ins", json={"resident_id": zhao})
    assert full.status_code == 409 and full.json()["error"] == "event_full"
    bad_code = platform.events("POST", f"/events/{event_id}/check-ins", json={"code": "nope"})
    assert bad_code.status_code == 404
    both = platform.events("POST", f"/events/{event_id}/check-ins", json={"code": code, "resident_id": li})
    assert both.status_code == 400

    early = platform.events("POST", f"/events/{event_id}/feedback", json={"resident_id": wang, "rating": 9})
    assert early.status_code == 409 and early.json()["error"] == "event_not_over"
    until_past(starts_at)
    assert platform.events("POST", f"/events/{event_id}/complete").status_code == 200
    assert platform.events("POST", f"/events/{event_id}/feedback",
                           json={"resident_id": wang, "rating": 10, "comment": "太好吃了!"}).status_code == 201
    summary = platform.events("POST", f"/events/{event_id}/feedback", json={"resident_id": li, "rating": 9}).json()
    assert summary["average"] == 9.5 and summary["distribution"]["10"] == 1
    eleven = platform.events("POST", f"/events/{event_id}/feedback", json={"resident_id": li, "rating": 11})
    assert eleven.status_code == 400 and "rating" in eleven.json()["details"]["fields"]
    again = platform.events("POST", f"/events/{event_id}/feedback", json={"resident_id": li, "rating": 3})
    assert again.status_code == 409 and again.json()["error"] == "already_rated"
    absent = platform.events("POST", f"/events/{event_id}/feedback", json={"resident_id": zhao, "rating": 5})
    assert absent.status_code == 403 and absent.json()["error"] == "not_an_attendee"

    messages = tap.messages()
    assert [m["type"] for m in messages] == ["attendance.recorded", "attendance.recorded", "event.completed",
                                             "feedback.submitted", "feedback.submitted"]
    assert [m["data"]["method"] for m in messages[:2]] == ["code", "walk_in"]
    assert messages[2]["data"]["attended"] == 2
    assert "太好吃" not in str(messages)  # comments stay in the events service
    for message in messages:
        parse_envelope(message)


def test_a_weekly_series(platform):
    ids = platform.events("POST", "/events", json=festival(
        category="lecture", title={"en": "English Corner"}, recurrence={"weekly": True, "count": 4})).json()["ids"]
    events = [platform.events("GET", f"/events/{i}").json() for i in ids]
    assert len({e["series_id"] for e in events}) == 1 and [e["occurrence"] for e in events] == [1, 2, 3, 4]
    starts = [datetime.fromisoformat(e["starts_at"]) for e in events]
    assert all(b - a == timedelta(weeks=1) for a, b in zip(starts, starts[1:]))
    assert events[0]["starts_at"].endswith("+08:00") and events[0]["display_title"] == "English Corner"


def test_two_events_cannot_share_a_venue_at_overlapping_times(platform):
    first = platform.scheduled_event(capacity=10)
    [second] = platform.events("POST", "/events", json=festival(
        starts_at=soon(days=10, hours=2), ends_at=soon(days=10, hours=6))).json()["ids"]
    clash = platform.events("POST", f"/events/{second}/schedule")
    assert clash.status_code == 409 and clash.json()["error"] == "venue_taken" and first in clash.json()["message"]
    assert platform.events("PATCH", f"/events/{second}", json={"venue": "社区活动中心"}).status_code == 200
    assert platform.events("POST", f"/events/{second}/schedule").status_code == 200
    back = platform.events("PATCH", f"/events/{second}", json={"venue": "桐梓林社区广场"})
    assert back.status_code == 409 and back.json()["error"] == "venue_taken"


def test_the_check_in_code_as_a_qr_image(platform):
    event_id = platform.scheduled_event()
    wang = platform.resident("王秀英")
    platform.register(event_id, wang)
    image = platform.events("GET", f"/events/{event_id}/registrations/{wang}/qr.png")
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    import png  # pypng reads it back: a real image, not bytes that look like one

    width, height, _, _ = png.Reader(bytes=image.content).read()
    assert width == height and width > 100


def test_every_operation_is_also_an_rpc(platform, config):
    wang = platform.resident("王秀英")
    with ServiceRpcProxy("events", config) as events:
        starts_at = soon(seconds=2)
        [event_id] = events.create(festival(starts_at=starts_at, ends_at=soon(hours=1)))
        events.schedule(event_id)
        assert events.register(event_id, wang)["status"] == "confirmed"
        assert events.check_in(event_id, resident_id=wang)["attended"]
        until_past(starts_at)
        events.complete(event_id)
        assert events.rate(event_id, wang, 8)["average"] == 8.0
        assert events.get(event_id)["status"] == "completed"


def test_a_larger_capacity_goes_to_the_waitlist_first(platform):
    event_id = platform.scheduled_event(capacity=1)
    first, second, third = (platform.resident(n) for n in ("甲", "乙", "丙"))
    for resident_id in (first, second):
        platform.register(event_id, resident_id)
    assert platform.events("PATCH", f"/events/{event_id}", json={"capacity": 2}).status_code == 200
    assert platform.events("GET", f"/events/{event_id}/registrations/{second}").json()["status"] == "offered"
    assert platform.register(event_id, third).json()["status"] == "waitlisted"
    shrink = platform.events("PATCH", f"/events/{event_id}", json={"capacity": 1})
    assert shrink.status_code == 409 and shrink.json()["error"] == "capacity_below_registrations"
