"""Who hears what, on which channel, and when. Pure Python: no broker, no database.

A notification has a *kind* (what happened) and a *category* (what the
resident opts out of). The in-app inbox always receives it (unless the
resident opted out of the category entirely); email and SMS only where the
resident consented to the channel and did not opt out of the category there.
Critical kinds (permits, safety) ignore opt-outs, quiet hours and the digest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from contracts.events import CATEGORIES as EVENT_CATEGORIES
from services.common.community_time import DEFAULT_TIME_ZONE

PUSH_CHANNELS = ("email", "sms")
CHANNELS = ("inapp", *PUSH_CHANNELS)
ALL = "*"


@dataclass(frozen=True)
class Kind:
    name: str
    category: str
    critical: bool = False


# category "event" is replaced by the event's own category (food, lecture, ...).
KINDS = {k.name: k for k in (
    Kind("welcome", "account"),
    Kind("event_announced", "event"),
    Kind("event_changed", "my_registrations"),
    Kind("event_cancelled", "my_registrations"),
    Kind("event_reminder", "my_registrations"),
    Kind("registration_confirmed", "my_registrations"),
    Kind("registration_waitlisted", "my_registrations"),
    Kind("registration_promoted", "my_registrations"),
    Kind("permit_expiring", "permit", critical=True),
    Kind("permit_expiring_centre", "permit", critical=True),
    Kind("digest", "digest"),
)}
CATEGORIES = ("account", "my_registrations", "permit", "safety", "digest", *EVENT_CATEGORIES)
OPTIONAL_CATEGORIES = tuple(c for c in CATEGORIES if c not in ("permit", "safety", "digest"))


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # spans midnight, e.g. 22:00-08:00


DEFAULT_QUIET_HOURS = QuietHours(time(22, 0), time(8, 0))


@dataclass(frozen=True)
class Preferences:
    """A resident's choices; the defaults are what a resident who chose nothing gets."""

    time_zone: str = DEFAULT_TIME_ZONE
    opt_outs: frozenset = field(default_factory=frozenset)  # {(category, channel or "*")}
    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS
    digest: bool = False
    digest_at: time = time(8, 0)

    def opted_out(self, category: str, channel: str) -> bool:
        return (category, channel) in self.opt_outs or (category, ALL) in self.opt_outs


@dataclass(frozen=True)
class Plan:
    """What to do on one push channel: send at ``due_at``, or hold for the digest due then."""

    channel: str
    due_at: datetime
    held_for_digest: bool = False


def wants_inbox(kind: Kind, category: str, prefs: Preferences) -> bool:
    return kind.critical or not prefs.opted_out(category, "inapp")


def plan_push(kind: Kind, category: str, consent: dict, prefs: Preferences, now: datetime) -> list[Plan]:
    """The email/SMS deliveries a new notification needs, with when each is due.

    Consent is the resident's legal agreement to a channel and binds even
    critical messages; opt-outs, quiet hours and the digest are preferences,
    which critical messages override.
    """
    plans = []
    for channel in PUSH_CHANNELS:
        if not consent.get(channel):
            continue
        if kind.critical:
            plans.append(Plan(channel, now))
        elif prefs.opted_out(category, channel):
            continue
        elif prefs.digest:
            plans.append(Plan(channel, next_local(prefs.digest_at, prefs.time_zone, now), held_for_digest=True))
        else:
            plans.append(Plan(channel, outside_quiet_hours(prefs, now)))
    return plans


def outside_quiet_hours(prefs: Preferences, now: datetime) -> datetime:
    """``now``, or the end of the quiet hours ``now`` falls in (morning, in the resident's time zone)."""
    quiet = prefs.quiet_hours
    if quiet is None:
        return now
    local = now.astimezone(ZoneInfo(prefs.time_zone))
    if not quiet.contains(local.timetz().replace(tzinfo=None)):
        return now
    return next_local(quiet.end, prefs.time_zone, now)


def next_local(at: time, time_zone: str, now: datetime) -> datetime:
    """The first moment at or after ``now`` when the local clock in ``time_zone`` reads ``at``."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate < local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(now.tzinfo)


def retry_delay(attempts: int, base_s: float, cap_s: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: exponential, capped."""
    return min(cap_s, base_s * 2 ** max(0, attempts - 1))


def local_day_before(starts_at: datetime, time_zone: str) -> datetime.date:
    """The calendar day (in the community's time zone) on which an event's reminder goes out."""
    return (starts_at.astimezone(ZoneInfo(time_zone)) - timedelta(days=1)).date()
