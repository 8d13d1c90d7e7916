"""Turning "tell these residents about this fact" into notification and delivery records.

A notification's id is derived from the fact and the recipient
(``<kind>:<fact>:<recipient>``), so the same fact can never give one
resident two notifications, whichever instance or redelivery creates it.
Its deliveries (one per push channel) are ``<notification id>:<channel>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time

from services.notifications import policy
from services.notifications.domain import render

CENTRE_PREFIX = "centre:"


@dataclass(frozen=True)
class Recipient:
    """Someone a notification is for: a resident, or a community's service centre."""

    id: str
    community_id: str
    language: str
    consent: dict = field(default_factory=lambda: {"inapp": True})
    prefs: policy.Preferences = field(default_factory=policy.Preferences)

    @property
    def resident_id(self) -> str | None:
        return None if self.id.startswith(CENTRE_PREFIX) else self.id


def centre_of(community_id: str, email: str | None, time_zone: str) -> Recipient:
    """A community's foreign-resident service centre: its staff inbox, and email if configured."""
    return Recipient(
        id=f"{CENTRE_PREFIX}{community_id}", community_id=community_id, language="zh-CN",
        consent={"inapp": True, "email": bool(email)}, prefs=policy.Preferences(time_zone=time_zone),
    )


def quiet_hours_from(value) -> policy.QuietHours | None:
    """``{"start": "22:00", "end": "08:00"}`` or ``"22:00-08:00"``; None or "off" for none.

    YAML (the service's config.yaml) reads a bare ``off`` as ``False``.
    """
    if value in (None, "", "off", False):
        return None
    start, end = (value["start"], value["end"]) if isinstance(value, dict) else value.split("-")
    return policy.QuietHours(time.fromisoformat(start), time.fromisoformat(end))


def preferences_from(doc: dict | None, defaults: policy.Preferences) -> policy.Preferences:
    """A resident's stored choices over the community's defaults (time zone, quiet hours)."""
    if not doc:
        return defaults
    return policy.Preferences(
        time_zone=doc.get("time_zone") or defaults.time_zone,
        opt_outs=frozenset((o["category"], o["channel"]) for o in doc.get("opt_outs", [])),
        quiet_hours=quiet_hours_from(doc["quiet_hours"]) if "quiet_hours" in doc else defaults.quiet_hours,
        digest=bool(doc.get("digest")),
        digest_at=time.fromisoformat(doc.get("digest_at") or "08:00"),
    )


class Composer:
    """Builds the records for one fact; renders each language once, however many readers share it."""

    def __init__(self, kind: str, fact_id: str, variables: dict, now: datetime, category: str | None = None,
                 rendered: dict | None = None):
        """``rendered``: a cache shared by composers of the same kind and variables."""
        self.kind = policy.KINDS[kind]
        self.category = category or self.kind.category
        self.fact_id = fact_id
        self.variables = variables
        self.now = now
        self._rendered = {} if rendered is None else rendered

    def message_for(self, recipient: Recipient):
        key = (recipient.language, recipient.prefs.time_zone)
        if key not in self._rendered:
            self._rendered[key] = render(self.kind.name, recipient.language,
                                         time_zone=recipient.prefs.time_zone, **self.variables)
        return self._rendered[key]

    def records(self, recipient: Recipient) -> tuple[dict, list[dict]] | None:
        """The notification and its deliveries, or None when the recipient opted out of all of it."""
        in_inbox = policy.wants_inbox(self.kind, self.category, recipient.prefs)
        plans = policy.plan_push(self.kind, self.category, recipient.consent, recipient.prefs, self.now)
        if not in_inbox and not plans:
            return None
        message = self.message_for(recipient)
        notification_id = f"{self.kind.name}:{self.fact_id}:{recipient.id}"
        notification = {
            "_id": notification_id, "recipient": recipient.id, "resident_id": recipient.resident_id,
            "community_id": recipient.community_id, "kind": self.kind.name, "category": self.category,
            "critical": self.kind.critical, "language": message.language, "title": message.title,
            "body": message.body, "fact_id": self.fact_id, "created_at": self.now, "in_inbox": in_inbox,
            "read_at": None, "own_language": message.language in _own_languages(recipient.language),
        }
        deliveries = [delivery(notification, plan) for plan in plans]
        return notification, deliveries


def _own_languages(preferred: str) -> tuple[str, str]:
    return preferred, preferred.split("-")[0]


def delivery(notification: dict, plan: policy.Plan) -> dict:
    return {
        "_id": f"{notification['_id']}:{plan.channel}", "notification_id": notification["_id"],
        "recipient": notification["recipient"], "resident_id": notification["resident_id"],
        "community_id": notification["community_id"], "channel": plan.channel, "kind": notification["kind"],
        "category": notification["category"], "critical": notification["critical"],
        "language": notification["language"], "title": notification["title"], "body": notification["body"],
        "own_language": notification.get("own_language", True), "status": "held" if plan.held_for_digest else "pending",
        "due_at": plan.due_at, "attempts": 0, "lease_until": None, "last_error": None,
        "created_at": notification["created_at"], "sent_at": None,
        # Taken by the sender (``leases``) from then on; one held for a digest is the digest's to take.
        "claimable_at": None if plan.held_for_digest else plan.due_at,
    }
