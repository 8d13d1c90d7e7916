"""Reading the projections: summaries, profiles, monthly activity, the city overview, the ranking.

Every read is a look-up by key in a projection (through the ``ReportsStore`` it is handed); nothing
here scans the history.
"""
from __future__ import annotations

import re
from datetime import date

from marshmallow import EXCLUDE, Schema, fields

from services.common.web import NotFound, ValidationFailed
from services.reports import activity, profile, scorecard

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class MonthQuery(Schema):
    """The query string of a route that reads one month (checked by ``parse_month``)."""

    class Meta:
        unknown = EXCLUDE

    month = fields.String(metadata={"description": "YYYY-MM; this month unless given"})


class MonthRangeQuery(Schema):
    """The query string of a route that reads months ``from``..``to`` (checked by ``month_range``)."""

    class Meta:
        unknown = EXCLUDE

    first = fields.String(data_key="from", metadata={"description": "YYYY-MM; twelve months before to unless given"})
    last = fields.String(data_key="to", metadata={"description": "YYYY-MM; this month unless given"})


def parse_month(raw: str | None, name: str, today: date) -> str:
    if raw is None or raw == "":
        return today.strftime("%Y-%m")
    if not _MONTH.match(raw):
        raise ValidationFailed(f"{name} must be a month as YYYY-MM, got {raw!r}", {"fields": {name: raw}})
    return raw


def month_range(first: str | None, last: str | None, today: date) -> tuple[str, str]:
    """``from``..``to`` as months; by default the twelve months up to ``to`` (or this month)."""
    last = parse_month(last, "to", today)
    if first is None:
        index = int(last[:4]) * 12 + int(last[5:]) - 1 - 11
        first = f"{index // 12:04d}-{index % 12 + 1:02d}"
    first = parse_month(first, "from", today)
    if first > last:
        raise ValidationFailed(f"from ({first}) is after to ({last})", {"fields": {"from": first, "to": last}})
    return first, last


def previous_month(today: date) -> str:
    return f"{today.year - 1}-12" if today.month == 1 else f"{today.year}-{today.month - 1:02d}"


def require_community(store, community_id: str) -> None:
    if not store.community_known(community_id):
        raise NotFound(f"no community {community_id!r} is known to reports")


def profile_of(store, community_id: str, today: date) -> dict:
    """One look-up by key (two more for a community known only by its activity)."""
    doc = store.community(community_id)
    if doc is None:
        require_community(store, community_id)
    return profile.view(doc or {"_id": community_id}, today)


def month_of(store, community_id: str, month: str) -> dict:
    return activity.view(store.month(community_id, month) or {"month": month})


def activity_months(store, community_id: str, first: str, last: str) -> list[dict]:
    return [activity.view(doc) for doc in store.months_of(community_id, first, last)]


def summary(store, community_id: str, today: date) -> dict:
    """The dashboard headline: two look-ups by key, however many residents the community has."""
    whole = profile_of(store, community_id, today)
    this_month = month_of(store, community_id, today.strftime("%Y-%m"))
    return {
        "community_id": community_id,
        "residents_total": whole["residents_total"],
        "residents_by_residence_type": whole["residents_by_residence_type"],
        "foreign_share": whole["foreign_share"],
        "this_month": {k: this_month[k] for k in (
            "month", "events_held", "registrations", "attendance_rate", "average_satisfaction",
            "notification_failure_rate")},
    }


def city_overview(store, month: str, today: date, may_see=lambda community: True) -> dict:
    rows = []
    for community_id in store.community_ids():
        if not may_see(community_id):
            continue
        whole = profile.view(store.community(community_id) or {"_id": community_id}, today)
        figures = month_of(store, community_id, month)
        rows.append({"community_id": community_id, "residents_total": whole["residents_total"],
                     "foreign_share": whole["foreign_share"], **{k: figures[k] for k in (
                         "events_held", "registrations", "attendance_rate", "no_show_rate", "waitlist_pressure",
                         "average_satisfaction", "notification_failure_rate", "notified_in_own_language_share")}})
    return {"month": month, "communities": rows}


def ranking(store, card: scorecard.Scorecard, month: str, today: date) -> list[dict]:
    """Every community's score: their profiles and their months read in one look-up each, not two per community."""
    communities = store.community_ids()
    profiles, months = store.communities(communities), store.months(communities, month)
    return scorecard.rank({community_id: scorecard.score(
        card, activity.view(months.get(community_id) or {"month": month}),
        profile.view(profiles.get(community_id) or {"_id": community_id}, today)) for community_id in communities})
