"""The communities' time zone: configured, with its default in one place."""
from datetime import datetime, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from services.common.community_time import community_time_zone, community_zone
from services.reports import activity, profile


def test_the_configured_zone_or_the_default():
    assert community_time_zone({"COMMUNITY_TIME_ZONE": "Europe/Paris"}) == "Europe/Paris"
    assert community_time_zone({"COMMUNITY_TIME_ZONE": ""}) == community_time_zone({}) == "Asia/Shanghai"
    assert community_zone(None) == ZoneInfo("Asia/Shanghai")


def test_the_reports_months_are_the_configured_zones():
    late_on_the_31st = datetime(2026, 12, 31, 20, 0, tzinfo=timezone.utc)  # already January in Chengdu
    feedback = SimpleNamespace(type="feedback.submitted", time=late_on_the_31st,
                               data={"community_id": "tongzilin", "rating": 9})
    assert activity.increments(feedback)[1] == "2027-01"
    assert activity.increments(feedback, community_zone({"COMMUNITY_TIME_ZONE": "Europe/Paris"}))[1] == "2026-12"
    assert profile.month_of(late_on_the_31st, ZoneInfo("America/New_York")) == "2026-12"
