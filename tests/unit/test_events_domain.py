from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from marshmallow import ValidationError

from services.events import domain

SHANGHAI = ZoneInfo("Asia/Shanghai")
FESTIVAL = {
    "community_id": "tongzilin",
    "organiser": "foreign_resident_service_centre",
    "category": "food",
    "title": {"zh-CN": "国际美食节", "en": "International Food Festival"},
    "venue": "桐梓林社区广场",
    "starts_at": "2026-12-12T10:00:00",
    "ends_at": "2026-12-12T14:00:00",
    "capacity": 120,
    "audience": "any_community",
}


def test_local_times_are_read_in_asia_shanghai_unless_told():
    event = domain.CreateEvent().load(FESTIVAL)
    assert event["starts_at"] == datetime(2026, 12, 12, 10, tzinfo=SHANGHAI)
    assert event["starts_at"].utcoffset() == timedelta(hours=8)
    paris = domain.CreateEvent().load({**FESTIVAL, "time_zone": "Europe/Paris"})
    assert paris["starts_at"].utcoffset() == timedelta(hours=1)
    explicit = domain.CreateEvent().load({**FESTIVAL, "starts_at": "2026-12-12T02:00:00Z", "ends_at": "2026-12-12T06:00:00Z"})
    assert explicit["starts_at"] == event["starts_at"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"ends_at": "2026-12-12T09:00:00"}, "ends_at"),
        ({"ends_at": "2026-12-12T10:00:00"}, "ends_at"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": -5}, "capacity"),
        ({"category": "rave"}, "category"),
        ({"title": {}}, "title"),
        ({"title": {"fr": "Fête"}}, "title"),
        ({"audience": "tagged"}, "audience_tags"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"registration_opens_at": "2026-12-10T00:00:00", "registration_closes_at": "2026-12-09T00:00:00"},
         "registration_closes_at"),
        ({"registration_closes_at": "2026-12-13T00:00:00"}, "registration_closes_at"),
        ({"recurrence": {"weekly": True, "count": 500}}, "recurrence"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_bad_field_is_named(change, field):
    with pytest.raises(ValidationError) as raised:
        domain.CreateEvent().load({**FESTIVAL, **change})
    assert field in raised.value.normalized_messages()


def test_one_language_is_enough_and_the_other_is_the_fallback():
    event = domain.CreateEvent().load({**FESTIVAL, "title": {"en": "English Corner"}})
    assert domain.title_in(event["title"], "zh-CN") == "English Corner"
    assert domain.title_in(FESTIVAL["title"], "fr") == "International Food Festival"
    assert domain.title_in(FESTIVAL["title"], "zh-CN") == "国际美食节"


def test_a_weekly_series_keeps_the_local_time():
    start = datetime(2026, 10, 24, 15, tzinfo=ZoneInfo("Europe/London"))  # the clocks go back on the 25th
    series = domain.occurrences(start, start + timedelta(hours=2), 3)
    assert [s.hour for s, _ in series] == [15, 15, 15]
    assert series[1][0].utcoffset() != series[0][0].utcoffset()
    assert all(e - s == timedelta(hours=2) for s, e in series)


@pytest.mark.parametrize("current, target, ok", [
    ("draft", "scheduled", True), ("scheduled", "completed", True), ("scheduled", "cancelled", True),
    ("draft", "completed", False), ("cancelled", "scheduled", False), ("completed", "cancelled", False),
])
def test_lifecycle(current, target, ok):
    if ok:
        domain.require_transition(current, target)
    else:
        with pytest.raises(domain.RuleBroken, match=f"{current} event cannot become {target}"):
            domain.require_transition(current, target)


NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
OPEN = {"status": "scheduled", "starts_at": NOW + timedelta(days=3), "registration_opens_at": NOW - timedelta(days=1),
        "registration_closes_at": None, "audience": "community", "audience_tags": [], "community_id": "tongzilin"}


@pytest.mark.parametrize("change, code", [
    ({"status": "cancelled"}, "event_not_open"),
    ({"registration_opens_at": NOW + timedelta(hours=1)}, "registration_not_open_yet"),
    ({"registration_closes_at": NOW - timedelta(seconds=1)}, "registration_closed"),
    ({"starts_at": NOW}, "registration_closed"),
])
def test_registration_window(change, code):
    domain.require_registration_open(OPEN, NOW)
    with pytest.raises(domain.RuleBroken) as raised:
        domain.require_registration_open({**OPEN, **change}, NOW)
    assert raised.value.code == code


@pytest.mark.parametrize("event, resident, allowed", [
    ({}, {"community_id": "tongzilin"}, True),
    ({}, {"community_id": "yulin"}, False),
    ({"audience": "any_community"}, {"community_id": "yulin"}, True),
    ({"audience": "tagged", "audience_tags": ["elderly"]}, {"community_id": "tongzilin", "tags": ["elderly"]}, True),
    ({"audience": "tagged", "audience_tags": ["elderly"]}, {"community_id": "tongzilin", "tags": []}, False),
    ({}, {"community_id": "tongzilin", "status": "departed"}, False),
])
def test_audience(event, resident, allowed):
    resident = {"status": "active", **resident}
    if allowed:
        domain.require_in_audience({**OPEN, **event}, resident)
    else:
        with pytest.raises(domain.RuleBroken):
            domain.require_in_audience({**OPEN, **event}, resident)


def test_rating_summary():
    summary = domain.rating_summary([10, 9, 9, 7])
    assert summary["count"] == 4 and summary["average"] == 8.75
    assert summary["distribution"]["9"] == 2 and summary["distribution"]["1"] == 0
    assert domain.rating_summary([])["average"] is None
