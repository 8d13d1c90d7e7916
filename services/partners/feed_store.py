"""Storage of partner feeds in the partners database (pymongo: feed entries are
written inside the exactly-once transaction, whose session mongoengine cannot take).

- ``partners``: ``_id`` the partner id, its name and scopes, its broker user and queue.
- ``feed_subscriptions``: types, communities, delivery method (url and signing secret
  for webhooks), status ``active`` | ``disabled``.
- ``feed_counters``: per partner, the last sequence number given out.
- ``feed_entries``: one per message and matching subscription, ``_id``
  ``<envelope id>:<subscription id>``, with the partner's sequence number and the
  envelope as it was on the bus (no personal data is ever stored here).
- ``feed_deliveries``: one per queue/webhook send of an entry (a replay adds another):
  status ``pending`` | ``sent`` | ``failed`` | ``disabled``, attempts, last error,
  when it is due, the lease of the instance sending it, and ``list_key`` (creation
  time, then id: the unique, indexed order ``GET /partners/<id>/deliveries`` pages in).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne

from contracts import registry
from services.common import leases
from services.partners import feeds

PARTNERS, SUBSCRIPTIONS, COUNTERS = "partners", "feed_subscriptions", "feed_counters"
ENTRIES, DELIVERIES = "feed_entries", "feed_deliveries"
PUSH_METHODS = ("queue", "webhook")
MIGRATIONS = "migrations"  # one-off rewrites done, by name


def now() -> datetime:
    return datetime.now(timezone.utc)


def ensure_indexes(db) -> None:
    db[ENTRIES].create_index([("partner_id", ASCENDING), ("method", ASCENDING), ("sequence", ASCENDING)])
    db[ENTRIES].create_index([("partner_id", ASCENDING), ("recorded_at", ASCENDING)])
    db[DELIVERIES].create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
    db[DELIVERIES].create_index([("partner_id", ASCENDING), ("list_key", ASCENDING)])
    db[DELIVERIES].create_index([("partner_id", ASCENDING), ("status", ASCENDING), ("list_key", ASCENDING)])
    db[DELIVERIES].create_index([("subscription_id", ASCENDING), ("status", ASCENDING)])
    db[DELIVERIES].create_index([(leases.CLAIMABLE, ASCENDING)])
    db[DELIVERIES].create_index([("status", ASCENDING), ("attempts", ASCENDING)])  # the failing ones' gauge
    db[SUBSCRIPTIONS].create_index([("partner_id", ASCENDING)])
    _give_old_deliveries_a_list_key(db)
    _make_pending_deliveries_claimable(db)


def _give_old_deliveries_a_list_key(db) -> None:
    """Deliveries made before deliveries had a ``list_key`` get theirs: once per database (marked in
    ``migrations``, so a later start costs one look-up, not a scan of every delivery)."""
    if db[MIGRATIONS].find_one({"_id": "delivery_list_key"}) is not None:
        return
    for old in db[DELIVERIES].find({"list_key": {"$exists": False}}, {"created_at": 1}):
        db[DELIVERIES].update_one({"_id": old["_id"]}, {"$set": {"list_key": _list_key(old["created_at"], old["_id"])}})
    db[MIGRATIONS].update_one({"_id": "delivery_list_key"}, {"$set": {"done": True}}, upsert=True)


def _make_pending_deliveries_claimable(db) -> None:
    """Pending deliveries from before ``claimable_at`` get theirs, once per database (as above)."""
    if db[MIGRATIONS].find_one({"_id": "feed_claimable_at"}) is not None:
        return
    for old in db[DELIVERIES].find({"status": "pending", leases.CLAIMABLE: {"$exists": False}}):
        due = max(old["next_attempt_at"], old.get("lease_until") or old["next_attempt_at"])
        db[DELIVERIES].update_one({"_id": old["_id"]}, {"$set": {leases.CLAIMABLE: due}})
    db[MIGRATIONS].update_one({"_id": "feed_claimable_at"}, {"$set": {"done": True}}, upsert=True)


def find_partner(db, partner_id: str) -> dict | None:
    return db[PARTNERS].find_one({"_id": partner_id})


def insert_partner(db, partner: dict) -> None:
    db[PARTNERS].insert_one({**partner, "created_at": now()})


def insert_subscription(db, subscription: dict) -> dict:
    document = {"_id": uuid.uuid4().hex, "status": "active", "created_at": now(), **subscription}
    db[SUBSCRIPTIONS].insert_one(document)
    return document


def subscriptions_of(db, partner_id: str) -> list[dict]:
    return list(db[SUBSCRIPTIONS].find({"partner_id": partner_id}).sort("created_at", ASCENDING))


def active_subscriptions(db, envelopes: list, session=None) -> list[dict]:
    """The active subscriptions to any of the types of ``envelopes`` (a small collection: one read)."""
    types = sorted({envelope.type for envelope in envelopes})
    return list(db[SUBSCRIPTIONS].find({"status": "active", "types": {"$in": types}}, session=session))


def matching(subscriptions: list[dict], envelope) -> list[dict]:
    return [s for s in subscriptions if feeds.subscription_matches(s, envelope.type, envelope.community)]


def record_messages(db, envelopes: list, subscriptions: list[dict] | None = None) -> int:
    """Record each of ``envelopes`` in the log of every active subscription it matches (of
    ``subscriptions``, else read now), with the partner's next sequence numbers, in the caller's
    transaction (``db.session``): a handful of writes for the whole batch. Returns the entries made."""
    session = db.session
    if subscriptions is None:
        subscriptions = active_subscriptions(db, envelopes, session=session)
    by_partner = {}
    for envelope in envelopes:
        for subscription in matching(subscriptions, envelope):
            by_partner.setdefault(subscription["partner_id"], []).append((subscription, envelope))
    at, entries, deliveries = now(), [], []
    for partner_id, matched in by_partner.items():
        # Incremented inside the transaction: a concurrent one conflicts and retries after this
        # commits, so sequence order is commit order and a reader's cursor never skips an entry.
        counter = db[COUNTERS].find_one_and_update(
            {"_id": partner_id}, {"$inc": {"sequence": len(matched)}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session)
        first = counter["sequence"] - len(matched) + 1
        for sequence, (subscription, envelope) in enumerate(matched, start=first):
            entry = _entry(subscription, envelope, sequence, at)
            entries.append(entry)
            if subscription["method"] in PUSH_METHODS:
                deliveries.append(_new_delivery(subscription, entry["_id"], envelope.id, at))
    for collection, documents in ((ENTRIES, entries), (DELIVERIES, deliveries)):
        if documents:
            db[collection].insert_many(documents, session=session)
    return len(entries)


def _entry(subscription: dict, envelope, sequence: int, at: datetime) -> dict:
    # As it was on the wire: the handler's envelope holds loaded values (datetimes), not their JSON form.
    wire = {**envelope.to_wire(), "data": registry.get(envelope.type, envelope.version).schema().dump(envelope.data)}
    return {"_id": f"{envelope.id}:{subscription['_id']}", "partner_id": subscription["partner_id"],
            "subscription_id": subscription["_id"], "method": subscription["method"], "sequence": sequence,
            "envelope": wire, "recorded_at": at}


def _list_key(created_at: datetime, delivery_id: str) -> str:
    return f"{created_at:%Y%m%dT%H%M%S%f}-{delivery_id}"


def _new_delivery(subscription: dict, entry_id: str, envelope_id: str, at: datetime, replay=False) -> dict:
    delivery_id = uuid.uuid4().hex
    return {
        "_id": delivery_id, "list_key": _list_key(at, delivery_id), "partner_id": subscription["partner_id"], "subscription_id": subscription["_id"],
        "method": subscription["method"], "entry_id": entry_id, "envelope_id": envelope_id, "replay": replay,
        "status": "pending", "attempts": 0, "last_error": None, "next_attempt_at": at, "lease_until": None,
        leases.CLAIMABLE: at, "created_at": at, "updated_at": at,
    }


def pull_page(db, partner_id: str, after: int, limit: int) -> list[dict]:
    """Entries of the partner's pull subscriptions after sequence ``after``, in sequence order."""
    query = {"partner_id": partner_id, "method": "pull", "sequence": {"$gt": after}}
    return list(db[ENTRIES].find(query).sort("sequence", ASCENDING).limit(limit))


def replay(db, partner_id: str, since: datetime) -> int:
    """A new pending delivery for each of the partner's queue/webhook entries recorded since ``since``."""
    active = {s["_id"]: s for s in db[SUBSCRIPTIONS].find(
        {"partner_id": partner_id, "status": "active", "method": {"$in": list(PUSH_METHODS)}})}
    entries = db[ENTRIES].find({"partner_id": partner_id, "recorded_at": {"$gte": since},
                                "subscription_id": {"$in": list(active)}}).sort("sequence", ASCENDING)
    at = now()
    deliveries = [_new_delivery(active[e["subscription_id"]], e["_id"], e["envelope"]["id"], at, replay=True)
                  for e in entries]
    if deliveries:
        db[DELIVERIES].insert_many(deliveries)
    return len(deliveries)


def claim_due_delivery(db, lease_s: float, owner: str) -> dict | None:
    """Atomically take one due delivery for ``lease_s`` seconds: no other instance takes it meanwhile."""
    claimed = claim_due_deliveries(db, lease_s, owner, 1)
    return claimed[0] if claimed else None


def claim_due_deliveries(db, lease_s: float, owner: str, limit: int) -> list[dict]:
    """Up to ``limit`` due deliveries, taken for ``lease_s`` seconds (``leases.claim``: three round trips)."""
    return leases.claim_due(db[DELIVERIES], now(), lease_s, leases.token(owner), limit)


def entries_by_id(db, entry_ids) -> dict:
    return _by_id(db[ENTRIES], entry_ids)


def subscriptions_by_id(db, subscription_ids) -> dict:
    return _by_id(db[SUBSCRIPTIONS], subscription_ids)


def partners_by_id(db, partner_ids) -> dict:
    return _by_id(db[PARTNERS], partner_ids)


def _by_id(collection, ids) -> dict:
    ids = sorted(set(ids))
    # One more than can match: the first batch is the whole answer, with no getMore to learn so.
    return {d["_id"]: d for d in collection.find({"_id": {"$in": ids}}).batch_size(len(ids) + 1)}


# -- how an attempt went: the changes ``finish_many`` writes ---------------------------------------

def sent(delivery: dict) -> dict:
    return {"status": "sent", "attempts": delivery["attempts"] + 1, "sent_at": now(), leases.CLAIMABLE: None}


def failed_attempt(delivery: dict, error: str, retry_in_s: float | None) -> dict:
    """A failed attempt; due again in ``retry_in_s``, or ``failed`` if None."""
    changes = {"attempts": delivery["attempts"] + 1, "last_error": error[:500]}
    if retry_in_s is None:
        return {**changes, "status": "failed", leases.CLAIMABLE: None}
    return {**changes, **_due_in(retry_in_s)}


def postponed(error: str, retry_in_s: float) -> dict:
    """Given back for later, not counted as an attempt (the trouble was on our side)."""
    return {"last_error": error[:500], **_due_in(retry_in_s)}


def disabled(delivery: dict, reason: str) -> dict:
    return {"status": "disabled", "attempts": delivery["attempts"] + 1, "last_error": reason, leases.CLAIMABLE: None}


def given_back() -> dict:
    """Not tried (the batch ran late): due again at once, not counted as an attempt."""
    return _due_in(0)


def _due_in(seconds: float) -> dict:
    due = now() + timedelta(seconds=seconds)
    return {"next_attempt_at": due, leases.CLAIMABLE: due}


def finish_many(db, finished: list[tuple[dict, dict]]) -> None:
    """``(delivery, changes)`` written in one round trip; each only while we hold its lease (a lease
    that ran out may have passed to another instance)."""
    if finished:
        db[DELIVERIES].bulk_write([
            UpdateOne({"_id": delivery["_id"], leases.OWNER: delivery.get(leases.OWNER)},
                      {"$set": {**changes, "lease_until": None, "updated_at": now()}})
            for delivery, changes in finished], ordered=False)


def enable_subscription(db, partner_id: str, subscription_id: str) -> tuple[dict | None, int]:
    """The subscription active again, and its deliveries stopped by the disable due now (the same
    envelope ids, so the partner can deduplicate); (None, 0) if the partner has no such subscription.
    Messages published while it was disabled were not recorded for it, and are not sent."""
    subscription = db[SUBSCRIPTIONS].find_one_and_update(
        {"_id": subscription_id, "partner_id": partner_id},
        {"$set": {"status": "active", "disabled_reason": None, "disabled_at": None, "enabled_at": now()}},
        return_document=ReturnDocument.AFTER)
    if subscription is None:
        return None, 0
    resumed = db[DELIVERIES].update_many(
        {"subscription_id": subscription_id, "status": "disabled"},
        {"$set": {"status": "pending", "next_attempt_at": now(), leases.CLAIMABLE: now(), "lease_until": None,
                  "updated_at": now()}})
    return subscription, resumed.modified_count


def disable_subscription(db, subscription_id: str, reason: str) -> None:
    """The endpoint is gone (HTTP 410): the subscription is disabled and its pending deliveries stop."""
    db[SUBSCRIPTIONS].update_one({"_id": subscription_id},
                                 {"$set": {"status": "disabled", "disabled_reason": reason, "disabled_at": now()}})
    db[DELIVERIES].update_many({"subscription_id": subscription_id, "status": "pending"},
                               {"$set": {"status": "disabled", "last_error": reason, leases.CLAIMABLE: None,
                                         "updated_at": now()}})


def deliveries_page(db, partner_id: str, status: str | None, after: str | None, limit: int):
    """Up to ``limit`` of the partner's deliveries (with ``status``), newest first, older than the cursor
    ``after``; and the cursor of the next page, or None when there is no more."""
    query = {"partner_id": partner_id, **({"status": status} if status else {}),
             **({"list_key": {"$lt": after}} if after else {})}
    items = list(db[DELIVERIES].find(query).sort("list_key", DESCENDING).limit(limit + 1))
    return items[:limit], (items[limit - 1]["list_key"] if len(items) > limit else None)


def retry_delivery(db, partner_id: str, delivery_id: str) -> dict | None:
    """A failed delivery due again now (one more attempt); None if there is no such failed delivery."""
    return db[DELIVERIES].find_one_and_update(
        {"_id": delivery_id, "partner_id": partner_id, "status": "failed"},
        {"$set": {"status": "pending", "next_attempt_at": now(), leases.CLAIMABLE: now(), "lease_until": None,
                  "updated_at": now()}},
        return_document=ReturnDocument.AFTER)


def find_delivery(db, partner_id: str, delivery_id: str) -> dict | None:
    return db[DELIVERIES].find_one({"_id": delivery_id, "partner_id": partner_id})
