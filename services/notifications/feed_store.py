"""Storage of partner feeds in the notifications database (pymongo: feed entries are
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

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from contracts import registry
from services.notifications import feeds

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
    db[SUBSCRIPTIONS].create_index([("partner_id", ASCENDING)])
    _give_old_deliveries_a_list_key(db)


def _give_old_deliveries_a_list_key(db) -> None:
    """Deliveries made before deliveries had a ``list_key`` get theirs: once per database (marked in
    ``migrations``, so a later start costs one look-up, not a scan of every delivery)."""
    if db[MIGRATIONS].find_one({"_id": "delivery_list_key"}) is not None:
        return
    for old in db[DELIVERIES].find({"list_key": {"$exists": False}}, {"created_at": 1}):
        db[DELIVERIES].update_one({"_id": old["_id"]}, {"$set": {"list_key": _list_key(old["created_at"], old["_id"])}})
    db[MIGRATIONS].update_one({"_id": "delivery_list_key"}, {"$set": {"done": True}}, upsert=True)


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


def record_message(db, envelope) -> int:
    """Record ``envelope`` in the log of every active subscription it matches, with the partner's
    next sequence number, in the caller's transaction (``db.session``). Returns the entries made."""
    session = db.session
    matching = [s for s in db[SUBSCRIPTIONS].find({"status": "active", "types": envelope.type}, session=session)
                if feeds.subscription_matches(s, envelope.type, envelope.community)]
    at = now()
    # As it was on the wire: the handler's envelope holds loaded values (datetimes), not their JSON form.
    wire = {**envelope.to_wire(), "data": registry.get(envelope.type, envelope.version).schema().dump(envelope.data)}
    for subscription in matching:
        partner_id = subscription["partner_id"]
        # Incremented inside the transaction: a concurrent one conflicts and retries after this
        # commits, so sequence order is commit order and a reader's cursor never skips an entry.
        counter = db[COUNTERS].find_one_and_update(
            {"_id": partner_id}, {"$inc": {"sequence": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session)
        entry_id = f"{envelope.id}:{subscription['_id']}"
        db[ENTRIES].insert_one({
            "_id": entry_id, "partner_id": partner_id, "subscription_id": subscription["_id"],
            "method": subscription["method"], "sequence": counter["sequence"],
            "envelope": wire, "recorded_at": at,
        }, session=session)
        if subscription["method"] in PUSH_METHODS:
            db[DELIVERIES].insert_one(_new_delivery(subscription, entry_id, envelope.id, at), session=session)
    return len(matching)


def _list_key(created_at: datetime, delivery_id: str) -> str:
    return f"{created_at:%Y%m%dT%H%M%S%f}-{delivery_id}"


def _new_delivery(subscription: dict, entry_id: str, envelope_id: str, at: datetime, replay=False) -> dict:
    delivery_id = uuid.uuid4().hex
    return {
        "_id": delivery_id, "list_key": _list_key(at, delivery_id), "partner_id": subscription["partner_id"], "subscription_id": subscription["_id"],
        "method": subscription["method"], "entry_id": entry_id, "envelope_id": envelope_id, "replay": replay,
        "status": "pending", "attempts": 0, "last_error": None, "next_attempt_at": at, "lease_until": None,
        "created_at": at, "updated_at": at,
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
    at = now()
    return db[DELIVERIES].find_one_and_update(
        {"status": "pending", "next_attempt_at": {"$lte": at},
         "$or": [{"lease_until": None}, {"lease_until": {"$lte": at}}]},
        {"$set": {"lease_until": at + timedelta(seconds=lease_s), "lease_owner": owner}},
        sort=[("next_attempt_at", ASCENDING)], return_document=ReturnDocument.AFTER)


def find_entry(db, entry_id: str) -> dict | None:
    return db[ENTRIES].find_one({"_id": entry_id})


def find_subscription(db, subscription_id: str) -> dict | None:
    return db[SUBSCRIPTIONS].find_one({"_id": subscription_id})


def mark_sent(db, delivery: dict) -> None:
    _finish(db, delivery, {"status": "sent", "attempts": delivery["attempts"] + 1, "sent_at": now()})


def mark_failed_attempt(db, delivery: dict, error: str, retry_in_s: float | None) -> None:
    """Record a failed attempt; due again in ``retry_in_s``, or ``failed`` if None."""
    changes = {"attempts": delivery["attempts"] + 1, "last_error": error[:500]}
    if retry_in_s is None:
        changes["status"] = "failed"
    else:
        changes["next_attempt_at"] = now() + timedelta(seconds=retry_in_s)
    _finish(db, delivery, changes)


def postpone(db, delivery: dict, error: str, retry_in_s: float) -> None:
    """Give the delivery back for later, not counted as an attempt (the trouble was on our side)."""
    _finish(db, delivery, {"last_error": error[:500], "next_attempt_at": now() + timedelta(seconds=retry_in_s)})


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
        {"$set": {"status": "pending", "next_attempt_at": now(), "lease_until": None, "updated_at": now()}})
    return subscription, resumed.modified_count


def disable_subscription(db, delivery: dict, reason: str) -> None:
    """The endpoint is gone (HTTP 410): the subscription is disabled and its pending deliveries stop."""
    db[SUBSCRIPTIONS].update_one({"_id": delivery["subscription_id"]},
                                 {"$set": {"status": "disabled", "disabled_reason": reason, "disabled_at": now()}})
    _finish(db, delivery, {"status": "disabled", "attempts": delivery["attempts"] + 1, "last_error": reason})
    db[DELIVERIES].update_many({"subscription_id": delivery["subscription_id"], "status": "pending"},
                               {"$set": {"status": "disabled", "last_error": reason, "updated_at": now()}})


def _finish(db, delivery: dict, changes: dict) -> None:
    # Only while we hold the lease: a lease that ran out may have passed to another instance.
    db[DELIVERIES].update_one({"_id": delivery["_id"], "lease_owner": delivery.get("lease_owner")},
                              {"$set": {**changes, "lease_until": None, "updated_at": now()}})


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
        {"$set": {"status": "pending", "next_attempt_at": now(), "lease_until": None, "updated_at": now()}},
        return_document=ReturnDocument.AFTER)


def find_delivery(db, partner_id: str, delivery_id: str) -> dict | None:
    return db[DELIVERIES].find_one({"_id": delivery_id, "partner_id": partner_id})
