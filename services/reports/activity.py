"""What happened in a community, month by month: events held, participation, satisfaction,
and what the notifications service reached.

Every figure is a sum of increments that each message contributes once
(messages are applied exactly once per id), so the totals do not depend on
the order messages arrive in.
"""
from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

from services.reports.profile import DEFAULT_ZONE, key, month_of, nonzero


def increments(envelope, zone: ZoneInfo = DEFAULT_ZONE) -> tuple[str, str, dict] | None:
    """(community, month, {counter path: n}) for a message, or None if it counts nothing here."""
    data, kind = envelope.data, envelope.type
    if kind == "event.completed":
        category = key(data["category"])
        return data["community_id"], month_of(data["starts_at"]), {
            "events_held": 1, f"held_by_category.{category}": 1, "registered": data["registered"],
            "attended": data["attended"], "waitlisted": data["waitlisted"],
            "attended_of_registered": min(data["attended"], data["registered"])}
    if kind == "event.scheduled":
        return data["community_id"], month_of(data["starts_at"]), {"events_scheduled": 1}
    if kind == "event.cancelled":
        return data["community_id"], month_of(data["starts_at"]), {"events_cancelled": 1}
    if kind == "feedback.submitted":
        rating = int(data["rating"])
        return data["community_id"], month_of(envelope.time, zone), {
            "ratings": 1, "rating_sum": rating, f"rating_distribution.{rating}": 1,
            "ratings_9_plus": 1 if rating >= 9 else 0}
    if kind == "notification.outcomes":
        counts = {f"notifications.{key(data['channel'])}.{key(data['outcome'])}": data["count"]}
        if data["outcome"] == "sent":
            counts |= {"notified": data["count"], "notified_in_own_language": data["in_own_language"]}
        return data["community_id"], month_of(data["occurred_on"]), counts
    return None


def apply(store, envelopes, session, zone: ZoneInfo) -> None:
    """Many messages at once: one write, an $inc per community and month they touch."""
    totals: dict[tuple[str, str], Counter] = {}
    for envelope in envelopes:
        found = increments(envelope, zone)
        if found is not None:
            community, month, counts = found
            totals.setdefault((community, month), Counter()).update(counts)
    moved = nonzero(totals)
    if moved:
        store.add_to_months(moved, session)


def _ratio(numerator, denominator) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def view(doc: dict) -> dict:
    """One community-month with its rates (None where there is nothing to divide by)."""
    registered, ratings = doc.get("registered", 0), doc.get("ratings", 0)
    channels = doc.get("notifications", {})
    sent = sum(c.get("sent", 0) for c in channels.values())
    failed = sum(c.get("failed", 0) for c in channels.values())
    return {
        "month": doc["month"],
        "events_scheduled": doc.get("events_scheduled", 0),
        "events_cancelled": doc.get("events_cancelled", 0),
        "events_held": doc.get("events_held", 0),
        "events_held_by_category": {k: v for k, v in sorted(doc.get("held_by_category", {}).items()) if v},
        "registrations": registered,
        "attendance": doc.get("attended", 0),
        "attendance_rate": _ratio(doc.get("attended_of_registered", 0), registered),
        "no_show_rate": _ratio(registered - doc.get("attended_of_registered", 0), registered),
        "waitlisted": doc.get("waitlisted", 0),
        "waitlist_pressure": _ratio(doc.get("waitlisted", 0), registered),
        "ratings": ratings,
        "average_satisfaction": _ratio(doc.get("rating_sum", 0), ratings),
        "satisfaction_distribution": {str(r): doc.get("rating_distribution", {}).get(str(r), 0) for r in range(1, 11)},
        "satisfaction_9_plus_share": _ratio(doc.get("ratings_9_plus", 0), ratings),
        "notifications_by_channel": {ch: dict(sorted(c.items())) for ch, c in sorted(channels.items())},
        "notification_failure_rate": _ratio(failed, sent + failed),
        "notified_in_own_language_share": _ratio(doc.get("notified_in_own_language", 0), doc.get("notified", 0)),
    }
