"""The rules of partner feeds. Pure Python: no broker, no database, no HTTP client.

A partner department is entitled to *scopes*: message types, communities, and
personal fields. A subscription chooses within them. Deliveries to webhooks
retry on a schedule, honour ``Retry-After``, and never go to a private address.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from contracts import registry
from contracts.feeds import PARTNER_PERSONAL_FIELDS, PERSONAL_KEY

ALL_COMMUNITIES = "*"
DELIVERY_METHODS = ("queue", "webhook", "pull")
PARTNER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")
# Seconds to wait before each attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day).
DEFAULT_RETRY_SCHEDULE_S = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
PARTNER_SUBJECT_PREFIX = "partner:"
DELIVERY_STATUSES = ("pending", "sent", "failed", "disabled")
MAX_SEQUENCE = 2 ** 63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_DELIVERY_CURSOR = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9a-f]{32}")

# Whose facts a partner may subscribe to: what happens to residents and at events (not the platform's own
# counts and assessments). Every type these services publish is offered, from the exchange its contract names.
PARTNER_FEED_PRODUCERS = frozenset({"residents", "events"})


class FeedRuleError(Exception):
    """A request a feed rule refuses; ``code`` and ``details`` say which rule and what broke it."""

    code = "feed_rule"
    status = 422

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class UnknownTypes(FeedRuleError):
    code = "unknown_message_types"
    status = 400


class OutsideScope(FeedRuleError):
    code = "outside_partner_scope"


class UnsafeUrl(FeedRuleError):
    code = "unsafe_webhook_url"


class BadFeedQuery(FeedRuleError):
    code = "bad_feed_query"
    status = 400


def partner_feed_types(types=registry) -> list[tuple[str, object]]:
    """Every ``(producer, MessageType)`` a partner may subscribe to (latest version of each)."""
    latest = {}
    for message_type in types:
        if message_type.on_the_bus and message_type.producer in PARTNER_FEED_PRODUCERS:
            current = latest.get(message_type.name)
            if current is None or message_type.version > current.version:
                latest[message_type.name] = message_type
    return [(latest[name].producer, latest[name]) for name in sorted(latest)]


def expand_types(patterns) -> set[str]:
    """Type names and ``prefix.*`` patterns -> type names; raises ``UnknownTypes`` naming the misses."""
    known = {message_type.name for _, message_type in partner_feed_types()}
    names, unknown = set(), []
    for pattern in patterns:
        matched = set(fnmatch.filter(known, pattern)) if pattern.endswith(".*") else ({pattern} & known)
        if not matched:
            unknown.append(pattern)
        names |= matched
    if unknown:
        raise UnknownTypes(f"unknown message types: {', '.join(unknown)}",
                           {"types": unknown, "known": sorted(known)})
    return names


@dataclass(frozen=True)
class PartnerScopes:
    """What a partner is entitled to. ``personal_residence_types`` limits personal fields to
    residents of those residence types (e.g. ``foreign`` for exit-entry administration); empty: any."""

    types: frozenset[str]
    communities: frozenset[str]
    personal_fields: frozenset[str] = frozenset()
    personal_residence_types: frozenset[str] = frozenset()

    @classmethod
    def from_request(cls, types, communities, personal_fields=(), personal_residence_types=()):
        outside = sorted(set(personal_fields) - PARTNER_PERSONAL_FIELDS)
        if outside:
            raise FeedRuleError(f"not personal fields a partner may receive: {', '.join(outside)}",
                                {"personal_fields": outside, "allowed": sorted(PARTNER_PERSONAL_FIELDS)})
        return cls(frozenset(expand_types(types)), _communities(communities),
                   frozenset(personal_fields), frozenset(personal_residence_types))

    def to_document(self) -> dict:
        return {"types": sorted(self.types), "communities": sorted(self.communities),
                "personal_fields": sorted(self.personal_fields),
                "personal_residence_types": sorted(self.personal_residence_types)}

    @classmethod
    def from_document(cls, document: dict) -> "PartnerScopes":
        return cls(*(frozenset(document.get(key, ())) for key in
                     ("types", "communities", "personal_fields", "personal_residence_types")))


def _communities(communities) -> frozenset[str]:
    if communities == ALL_COMMUNITIES:
        return frozenset({ALL_COMMUNITIES})
    return frozenset(communities)


def check_subscription(scopes: PartnerScopes, types, communities) -> tuple[set[str], frozenset[str]]:
    """The subscription's type names and communities, or ``OutsideScope`` naming what is outside."""
    names = expand_types(types)
    wanted = _communities(communities)
    outside = {}
    if names - scopes.types:
        outside["types"] = sorted(names - scopes.types)
    if ALL_COMMUNITIES not in scopes.communities and wanted - scopes.communities:
        outside["communities"] = sorted(wanted - scopes.communities)
    if outside:
        what = "; ".join(f"{key}: {', '.join(values)}" for key, values in outside.items())
        raise OutsideScope(f"outside this partner's scope: {what}", outside)
    return names, wanted


def subscription_matches(subscription: dict, envelope_type: str, community: str | None) -> bool:
    communities = subscription["communities"]
    return envelope_type in subscription["types"] and (ALL_COMMUNITIES in communities or community in communities)


def personal_fields_wanted(scopes: PartnerScopes, data: dict) -> list[str]:
    """Which personal fields to attach to a message with ``data``: none unless it names a resident
    the partner's scope covers."""
    if not scopes.personal_fields or not data.get("resident_id"):
        return []
    if scopes.personal_residence_types and data.get("residence_type") not in scopes.personal_residence_types:
        return []
    return sorted(scopes.personal_fields)


def partner_view(envelope_wire: dict, personal: dict | None) -> dict:
    """The envelope as the partner receives it: ``data.personal`` only with fields to give."""
    if not personal:
        return envelope_wire
    return {**envelope_wire, "data": {**envelope_wire["data"], PERSONAL_KEY: personal}}


def filter_personal(allowed_fields, fetched: dict) -> dict | None:
    """Of what the residents service returned, only the allowed fields (and the id); None if unavailable."""
    if not fetched or not fetched.get("available"):
        return None
    return {"resident_id": fetched["resident_id"], **{f: fetched.get(f) for f in sorted(allowed_fields)}}


def next_retry_delay(attempts_made: int, schedule=DEFAULT_RETRY_SCHEDULE_S, retry_after_s: float | None = None):
    """Seconds until the next attempt after ``attempts_made`` failed ones, or None: give up."""
    if attempts_made >= len(schedule):
        return None
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    return float(schedule[attempts_made])


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def check_webhook_url(url: str, allow_private: bool, resolve=socket.getaddrinfo) -> None:
    """Refuse a webhook URL that is not http(s), or whose host resolves to a non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl(f"not an http(s) URL with a host: {url}", {"url": url})
    if allow_private:
        return
    try:
        addresses = {info[4][0] for info in resolve(parts.hostname, parts.port or 443, 0, socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"the webhook host {parts.hostname} does not resolve: {exc}", {"url": url}) from None
    private = sorted(a for a in addresses if not _is_public(a))
    if private:
        raise UnsafeUrl(f"the webhook host {parts.hostname} resolves to a non-public address: {', '.join(private)}",
                        {"url": url, "addresses": private})


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone id
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def partner_of(subject: str) -> str | None:
    """The partner id a token's subject names (``partner:<id>``), or None."""
    return subject[len(PARTNER_SUBJECT_PREFIX):] if subject.startswith(PARTNER_SUBJECT_PREFIX) else None


def parse_cursor(after: str | None) -> int:
    """A feed cursor: a sequence number, 0 to 2**63 - 1 (what the database holds)."""
    if after in (None, ""):
        return 0
    if not _DIGITS.fullmatch(after) or int(after) > MAX_SEQUENCE:
        raise BadFeedQuery(f"after: not a cursor from this feed: {after!r}", {"after": after})
    return int(after)


def parse_limit(limit: str | None, default=100, maximum=1000) -> int:
    if limit is None:
        return default
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    if not _DIGITS.fullmatch(limit) or not 1 <= int(limit) <= maximum:
        raise BadFeedQuery(f"limit: must be a whole number from 1 to {maximum}, not {limit!r}", {"limit": limit})
    return int(limit)


def parse_delivery_cursor(after: str | None) -> str | None:
    """A cursor of the deliveries list: the ``next`` a previous page gave."""
    if after in (None, ""):
        return None
    if not _DELIVERY_CURSOR.fullmatch(after):
        raise BadFeedQuery(f"after: not a cursor from this list: {after!r}", {"after": after})
    return after


def parse_delivery_status(status: str | None) -> str | None:
    if status is None:
        return None
    if status not in DELIVERY_STATUSES:
        raise BadFeedQuery(f"status: one of {', '.join(DELIVERY_STATUSES)}, not {status!r}", {"status": status})
    return status
