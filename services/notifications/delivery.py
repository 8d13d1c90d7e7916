"""Sending due email/SMS deliveries, retrying with backoff, and assembling daily digests.

Due deliveries are claimed in batches with a lease before they are sent
(``leases``), so two instances of the service never send one at the same
time; a delivery whose sender died mid-way is claimed again when the lease
runs out. How a batch went is recorded in one write.
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
    max_per_round: int = 2000
    batch: int = 100  # deliveries claimed, and their outcomes recorded, per round trip


RELEASED = "released"  # not tried: given back (not an attempt, not an outcome)


@dataclass(frozen=True)
class Attempt:
    """How one claimed delivery went: ``sent``, ``failed``, ``skipped``, or ``retry`` at ``retry_at``."""

    claimed: dict
    outcome: str
    error: str | None = None
    retry_at: datetime | None = None


class Unreachable(Exception):
    """The delivery cannot be made and never will: no consent, no address, resident gone."""


def deliver_due(db, channels: dict, address_of, unsubscribe_url, now_fn, settings: Settings,
                finish=None, addresses_for=None) -> dict:
    """Send what is due, a claimed batch at a time; returns counts by outcome.

    ``address_of(claimed)`` is the address of one delivery; or ``addresses_for(batch)`` looks up
    those of a claimed batch at once and returns the ``address_of`` that answers from them.
    ``finish(attempts, now)`` records how a batch went, in one write, and returns the attempts it
    recorded (those whose lease this instance still held). The default records them in the
    store; the service's also stages, in the same transaction, the outcomes it reports, so a
    crash can neither lose nor double the count."""
    finish = finish or (lambda attempts, now: store.finish_batch(db, attempts, now))
    outcomes = {}
    for claimed_batch in store.due_batches(db, now_fn, settings.lease_s, settings.batch, settings.max_per_round):
        if addresses_for is not None:
            address_of = addresses_for([c for c in claimed_batch if now_fn() < _send_by(c, settings)])
        attempts = [deliver_one(claimed, channels, address_of, unsubscribe_url, now_fn, settings)
                    if now_fn() < _send_by(claimed, settings) else Attempt(claimed, RELEASED)
                    for claimed in claimed_batch]
        for attempt in finish(attempts, now_fn()):
            if attempt.outcome != RELEASED:
                outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
                DELIVERIES.labels(attempt.claimed["channel"], attempt.outcome).inc()
    return outcomes


def _send_by(claimed: dict, settings: Settings) -> datetime:
    """Half-way through the lease: what a slow batch has not sent by then is given back, long
    before another instance could take it while it is still being sent here."""
    return claimed["lease_until"] - timedelta(seconds=settings.lease_s / 2)


def deliver_one(claimed: dict, channels, address_of, unsubscribe_url, now_fn, settings) -> Attempt:
    """Try one delivery; what it came to is the caller's to record."""
    channel = claimed["channel"]
    try:
        address = _lookup(address_of, claimed)
        url = unsubscribe_url(claimed) if channel == "email" and claimed["resident_id"] else None
        channels[channel].send(address, Outgoing(claimed["_id"], claimed["title"], _with_footer(claimed, url), url))
    except Unreachable as exc:
        return Attempt(claimed, "skipped", str(exc))
    except ChannelError as exc:
        if exc.permanent or claimed["attempts"] >= settings.max_attempts:
            reason = str(exc) if exc.permanent else f"{exc} (gave up after {claimed['attempts']} attempts)"
            log.warning("delivery %s failed: %s", claimed["_id"], reason)
            return Attempt(claimed, "failed", reason)
        delay = policy.retry_delay(claimed["attempts"], settings.retry_base_s, settings.retry_cap_s)
        return Attempt(claimed, "retry", str(exc), now_fn() + timedelta(seconds=delay))
    return Attempt(claimed, "sent")


def _lookup(address_of, claimed: dict) -> str:
    """The address, or ``Unreachable``; a failing lookup (residents service down) is retried."""
    try:
        return address_of(claimed)
    except (Unreachable, ChannelError):
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


def address_book(claimed_batch: list[dict], get_contacts, centre_emails: dict):
    """The ``address_of`` of a claimed batch: the residents' contacts read at once
    (``get_contacts(resident ids)``: opened contacts), the service centres' addresses from
    ``centre_emails``. A failed look-up makes each of the batch's residents' deliveries a retry."""
    resident_ids = sorted({c["resident_id"] for c in claimed_batch if not is_centre(c)})
    try:
        contacts, failure = {c["resident_id"]: c for c in get_contacts(resident_ids)} if resident_ids else {}, None
    except Exception as exc:  # noqa: BLE001 - any failure to look up is worth another try later
        contacts, failure = {}, f"contact lookup failed: {type(exc).__name__}"

    def address_of(claimed: dict) -> str:
        if is_centre(claimed):
            address = centre_emails.get(claimed["community_id"])
            if not address:
                raise Unreachable("no email address is configured for this service centre")
            return address
        contact = contacts.get(claimed["resident_id"])
        if contact is None:  # the look-up failed, or the registry does not know the resident (yet)
            raise ChannelError(failure or "contact lookup failed: no such resident in the registry")
        return address_from_contact(contact, claimed["channel"])

    return address_of


def is_centre(claimed: dict) -> bool:
    return claimed["recipient"].startswith(CENTRE_PREFIX)


def assemble_digests(db, create_atomically, due_by: datetime, now: datetime) -> int:
    """Group each resident's deliveries held until ``due_by`` into one digest per channel, sent from ``now``;
    ``create_atomically(records, then)`` makes each digest and marks what it groups in one transaction."""
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
        create_atomically(records, then=lambda session, ids=ids, digest_id=notification["_id"]:
                          store.mark_digested(db, ids, digest_id, session=session))
        made += 1
    return made
