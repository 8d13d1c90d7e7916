"""Bookkeeping that expires: the records that make handling exactly-once are kept past the longest
redelivery horizon, then deleted, so they do not grow with the platform's history.

``processed_messages`` (a consumer's claim on an envelope id, ``processed_at``) and ``ingest_records``
(a message of an internal system handled, ``at``) only have to outlive every second copy of their
message: a retry (``MESSAGE_RETRY_DELAYS_S``, minutes), a message the outbox relay publishes again
after a crash (when the process comes back), one an internal system sends again. They are kept
``BOOKKEEPING_RETENTION_HOURS`` (a week by default), then deleted by an indexed range delete every
``PRUNE_EVERY_S``, by each instance of each service (deleting twice is harmless).

Not a TTL index: SecantusDB honours them, but its sweeper reads every document of every TTL
collection each minute under its global lock, a pause that grows with the retention; the range
delete on an index costs milliseconds on SecantusDB and on MongoDB alike.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import eventlet

from services.common.ingest import INGEST_RECORDS

log = logging.getLogger(__name__)

PROCESSED_COLLECTION = "processed_messages"  # a consumer's claims (services.common.mongo.Database.exactly_once)

EXPIRING = {PROCESSED_COLLECTION: "processed_at", INGEST_RECORDS: "at"}  # collection -> the date it expires by
DEFAULT_RETENTION_HOURS = 7 * 24
PRUNE_EVERY_S = 600.0


def retention(config) -> timedelta:
    return timedelta(hours=float(config.get("BOOKKEEPING_RETENTION_HOURS") or DEFAULT_RETENTION_HOURS))


def prepare(database) -> None:
    """The index each range delete reads (and the collections, made before concurrent transactions
    would race to create them)."""
    for collection, field in EXPIRING.items():
        database[collection].create_index([(field, 1)])


def prune(database, kept: timedelta, now: datetime | None = None) -> int:
    """Delete the records older than ``kept``; returns how many."""
    cutoff = (now or datetime.now(timezone.utc)) - kept
    return sum(database[collection].delete_many({field: {"$lt": cutoff}}).deleted_count
               for collection, field in EXPIRING.items())


def prune_forever(database, kept: timedelta, every_s: float = PRUNE_EVERY_S) -> None:
    """A managed thread of the service's database provider: prunes at start, then every ``every_s``."""
    while True:
        try:
            pruned = prune(database, kept)
            if pruned:
                log.info("bookkeeping: %d record(s) older than %s deleted", pruned, kept)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("bookkeeping: pruning failed (%s); trying again later", type(exc).__name__)
        eventlet.sleep(every_s)
