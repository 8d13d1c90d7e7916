"""Sending due email/SMS deliveries, retrying with backoff, and assembling daily digests.

Each delivery is claimed with a lease before it is sent, so two instances of
the service never send one at the same time; a delivery whose sender died
mid-way is claimed again when the lease runs out.
"""
from __future__ import annotations

import logging

from prometheus_client import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from services.notifications import policy, store
from services.notifications.channels import ChannelError, Outgoing
from services.notifications.compose import CENTRE_PREFIX, Composer, Recipient, delivery
from services.notifications.domain import render

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "linli_notification_deliveries_total",
    "Email/SMS delivery attempts by channel and outcome (sent | retry | failed | skipped).",
    ["channel", "outcome"],
)
# Every series from 0 at start, so the first failure shows in rate() rather than starting a series.
for _channel in ("email", "sms"):
    for _outcome in ("sent", "retry", "failed", "skipped"):
        DELIVERIES.labels(_channel, _outcome)


@dataclass(frozen=True)
class Settings:
    max_attempts: int = 5
    retry_base_s: float = 30.0
    retry_cap_s: float = 3600.0
    lease_s: float = 120.0
    max_per_round: int = 500


class Unreachable(Exception):
    """The delivery cannot be made and never will: no consent, no address, resident gone."""


def deliver_due(db, channels: dict, address_of, unsubscribe_url, now_fn, settings: Settings,
                finish=None) -> dict:
    """Send what is due, one claimed delivery at a time; returns counts by outcome.

    ``finish(delivery, outcome, error, now)`` records each delivery that ended (sent, failed,
    skipped). The default records it in the store; the service's also stages, in the same
    transaction, the outcome it reports, so a crash can neither lose nor double the count."""
    finish = finish or (lambda claimed, outcome, error, now: store.finish(db, claimed["_id"], outcome, now, error))
    outcomes = {}
    for _ in range(settings.max_per_round):
        claimed = store.claim_due(db, now_fn(), settings.lease_s)
        if claimed is None:
            break
        outcome, error = deliver_one(db, claimed, channels, address_of, unsubscribe_url, now_fn, settings)
        if outcome != "retry":
            finish(claimed, outcome, error, now_fn())
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        DELIVERIES.labels(claimed["channel"], outcome).inc()
    return outcomes


def deliver_one(db, claimed: dict, channels, address_of, unsubscribe_url, now_fn, settings) -> tuple[str, str | None]:
    """Try one delivery: ``(outcome, error)``. A retry is scheduled here; an end is the caller's to record."""
    channel = claimed["channel"]
    try:
        address = _lookup(address_of, claimed)
        url = unsubscribe_url(claimed) if channel == "email" and claimed["resident_id"] else None
        channels[channel].send(address, Outgoing(claimed["_id"], claimed["title"], _with_footer(claimed, url), url))
    except Unreachable as exc:
        return "skipped", str(exc)
    except ChannelError as exc:
        if exc.permanent or claimed["attempts"] >= settings.max_attempts:
            reason = str(exc) if exc.permanent else f"{exc} (gave up after {claimed['attempts']} attempts)"
            log.warning("delivery %s failed: %s", claimed["_id"], reason)
            return "failed", reason
        delay = policy.retry_delay(claimed["attempts"], settings.retry_base_s, settings.retry_cap_s)
        store.retry_later(db, claimed["_id"], now_fn() + timedelta(seconds=delay), str(exc))
        return "retry", str(exc)
    return "sent", None


def _lookup(address_of, claimed: dict) -> str:
    """The address, or ``Unreachable``; a failing lookup (residents service down) is retried."""
    try:
        return address_of(claimed)
    except Unreachable:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to look up is worth another try later
        raise ChannelError(f"contact lookup failed: {type(exc).__name__}") from None


def _with_footer(claimed: dict, unsubscribe_url: str | None) -> str:
    if not unsubscribe_url:
        return claimed["body"]
    footer = render("email_footer", claimed["language"], unsubscribe_url=unsubscribe_url)
    return f"{claimed['body']}\n{footer.body}"


def address_from_contact(contact: dict, channel: str) -> str:
    """The address on ``channel`` from the residents service's answer, or ``Unreachable``."""
    if not contact.get("reachable"):
        raise Unreachable("the resident is no longer in the registry (departed or erased)")
    if not (contact.get("consent") or {}).get(channel):
        raise Unreachable(f"the resident has not consented to {channel}")
    address = contact.get("email" if channel == "email" else "phone")
    if not address:
        raise Unreachable(f"no {'email address' if channel == 'email' else 'phone number'} on record")
    return address


def is_centre(claimed: dict) -> bool:
    return claimed["recipient"].startswith(CENTRE_PREFIX)


def assemble_digests(db, client, due_by: datetime, now: datetime) -> int:
    """Group each resident's deliveries held until ``due_by`` into one digest per channel, sent from ``now``."""
    held = sorted(store.held_due(db, due_by), key=lambda d: (d["recipient"], d["channel"]))
    made = 0
    for (recipient_id, channel), group in groupby(held, key=lambda d: (d["recipient"], d["channel"])):
        group = list(group)
        first = group[0]
        recipient = Recipient(recipient_id, first["community_id"], first["language"], consent={channel: True})
        # The digest's fact is the set of deliveries it groups, due at one digest time.
        fact = f"{channel}:{min(d['due_at'] for d in group).isoformat()}"
        composer = Composer("digest", fact, {"items": [{"title": d["title"]} for d in group]}, now)
        notification, _ = composer.records(recipient)
        notification["in_inbox"] = False  # the inbox already shows each item
        records = [(notification, [delivery(notification, policy.Plan(channel, now))])]

        ids = [d["_id"] for d in group]
        store.create_atomically(db, client, records,
                                then=lambda session, ids=ids, digest_id=notification["_id"]:
                                store.mark_digested(db, ids, digest_id, session=session))
        made += 1
    return made
