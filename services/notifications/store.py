"""The notifications database: what the service knows of residents and events, and what it sent.

Projections (``audience``, ``events``, ``registrations``) are built from the
messages the service consumes, so deciding who to tell needs no call to
another service; contact addresses are the exception, read at send time.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.paging import page, window
from services.notifications.compose import Recipient, preferences_from
from services.notifications.policy import Preferences

AUDIENCE = "audience"
PREFERENCES = "preferences"
EVENTS = "events"
REGISTRATIONS = "registrations"
NOTIFICATIONS = "notifications"
FAN_OUTS = "fan_outs"
DELIVERIES = "deliveries"
HOLDING_REGISTRATION = ("confirmed", "waitlisted", "offered")
INBOX_ORDER = [("created_at", DESCENDING), ("_id", DESCENDING)]


def ensure_indexes(db) -> None:
    db[AUDIENCE].create_index([("community_id", ASCENDING), ("status", ASCENDING)])
    db[REGISTRATIONS].create_index([("event_id", ASCENDING), ("status", ASCENDING)])
    db[EVENTS].create_index([("status", ASCENDING), ("starts_at", ASCENDING)])
    db[NOTIFICATIONS].create_index([("recipient", ASCENDING), *INBOX_ORDER])
    db[DELIVERIES].create_index([("status", ASCENDING), ("due_at", ASCENDING)])
    db[DELIVERIES].create_index([("notification_id", ASCENDING)])
    db[FAN_OUTS].create_index([("status", ASCENDING)])


# -- what the service knows of residents --------------------------------------

def upsert_resident(db, facts: dict, session=None) -> None:
    upsert_residents(db, [facts], session=session)


def upsert_residents(db, facts_list: list[dict], session=None) -> None:
    """What notifications needs to know of residents, in one round trip for many."""
    updates = []
    for facts in facts_list:
        fields = {k: facts[k] for k in ("community_id", "preferred_language", "tags", "consent") if k in facts}
        if fields.get("consent") is None:
            fields.pop("consent", None)
        updates.append(UpdateOne({"_id": facts["resident_id"]},
                                 {"$set": fields, "$setOnInsert": {"status": "active"}}, upsert=True))
    if updates:
        db[AUDIENCE].bulk_write(updates, ordered=False, session=session)


def set_resident_status(db, resident_id: str, status: str, session=None) -> None:
    db[AUDIENCE].update_one({"_id": resident_id}, {"$set": {"status": status}}, session=session)


def resident_community(db, resident_id: str) -> str | None:
    doc = db[AUDIENCE].find_one({"_id": resident_id}, {"community_id": 1})
    return doc["community_id"] if doc else None


def recipients(db, query: dict, defaults: Preferences, session=None, limit: int = 0) -> list[Recipient]:
    """Active residents matching ``query`` (in id order, ``limit`` of them if given) with their
    preferences, in two queries however many."""
    found = db[AUDIENCE].find({**query, "status": "active"}, session=session).sort("_id", ASCENDING)
    residents = list(found.limit(limit) if limit else found)
    ids = [r["_id"] for r in residents]
    prefs = {p["_id"]: p for p in db[PREFERENCES].find({"_id": {"$in": ids}}, session=session)} if ids else {}
    return [
        Recipient(id=r["_id"], community_id=r["community_id"], language=r.get("preferred_language") or "zh-CN",
                  consent=r.get("consent") or {"inapp": True},
                  prefs=preferences_from(prefs.get(r["_id"]), defaults))
        for r in residents
    ]


def preferences(db, resident_id: str) -> dict | None:
    return db[PREFERENCES].find_one({"_id": resident_id})


def save_preferences(db, resident_id: str, prefs: dict) -> None:
    db[PREFERENCES].replace_one({"_id": resident_id}, {"_id": resident_id, **prefs}, upsert=True)


def opt_out(db, resident_id: str, category: str, channel: str) -> None:
    db[PREFERENCES].update_one({"_id": resident_id},
                               {"$addToSet": {"opt_outs": {"category": category, "channel": channel}}}, upsert=True)


# -- what the service knows of events ------------------------------------------

def upsert_event(db, facts: dict, status: str, session=None) -> None:
    fields = {k: facts[k] for k in ("community_id", "category", "starts_at", "audience", "audience_tags") if k in facts}
    if isinstance(fields.get("starts_at"), str):
        fields["starts_at"] = datetime.fromisoformat(fields["starts_at"])
    db[EVENTS].update_one({"_id": facts["event_id"]}, {"$set": {**fields, "status": status}},
                          upsert=True, session=session)


def events_starting(db, start: datetime, end: datetime) -> list[dict]:
    return list(db[EVENTS].find({"status": "scheduled", "starts_at": {"$gte": start, "$lt": end}}))


def set_registration(db, facts: dict, status: str, session=None) -> None:
    db[REGISTRATIONS].update_one(
        {"_id": f"{facts['event_id']}:{facts['resident_id']}"},
        {"$set": {"event_id": facts["event_id"], "resident_id": facts["resident_id"], "status": status}},
        upsert=True, session=session)


def registrant_ids(db, event_id: str, statuses=HOLDING_REGISTRATION, session=None) -> list[str]:
    found = db[REGISTRATIONS].find({"event_id": event_id, "status": {"$in": list(statuses)}},
                                   {"resident_id": 1}, session=session)
    return [r["resident_id"] for r in found]


# -- fan-out jobs ---------------------------------------------------------------------

def add_fan_out(db, job: dict, session=None) -> None:
    db[FAN_OUTS].insert_one(job, session=session)


def pending_fan_outs(db) -> list[dict]:
    return list(db[FAN_OUTS].find({"status": "pending"}).sort("created_at", ASCENDING))


def advance_fan_out(db, job_id: str, after: str | None, session=None) -> None:
    """Record a page as done; ``after`` None means the audience is exhausted."""
    done = {"after": after} if after is not None else {"status": "done"}
    db[FAN_OUTS].update_one({"_id": job_id}, {"$set": done}, session=session)


# -- notifications and deliveries ---------------------------------------------------

def create(db, records: list[tuple[dict, list[dict]]], session=None) -> list[dict]:
    """Insert the notifications (and their deliveries) not created before; returns the new notifications."""
    if not records:
        return []
    ids = [notification["_id"] for notification, _ in records]
    existing = {d["_id"] for d in db[NOTIFICATIONS].find({"_id": {"$in": ids}}, {"_id": 1}, session=session)}
    fresh = [(n, ds) for n, ds in records if n["_id"] not in existing]
    if fresh:
        db[NOTIFICATIONS].insert_many([n for n, _ in fresh], ordered=False, session=session)
        deliveries = [d for _, ds in fresh for d in ds]
        if deliveries:
            db[DELIVERIES].insert_many(deliveries, ordered=False, session=session)
    return [n for n, _ in fresh]


def create_atomically(db, client, records: list, then=None) -> list[dict]:
    """``create`` in a transaction of its own (with ``then(session)``), for timers outside a handler.

    Two instances may race to create the same records: the loser's
    transaction fails on the unique ids, and its retry finds them made.
    """
    def in_transaction(session):
        made = create(db, records, session=session)
        if then is not None:
            then(session)
        return made

    for attempt in range(3):
        try:
            with client.start_session() as session:
                return session.with_transaction(in_transaction)
        except (DuplicateKeyError, BulkWriteError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def inbox(db, recipient: str, query: dict) -> tuple[list[tuple[dict, list[dict]]], str | None]:
    """A page of ``recipient``'s inbox (``query``: ``schemas.InboxQuery``), newest first, each
    notification with its deliveries; and the cursor of the next page, if there is one."""
    since, keep = window(INBOX_ORDER, query.get("after"))
    found = {"recipient": recipient, "in_inbox": True, **since}
    if query["unread"]:
        found["read_at"] = None
    items, after = page(db[NOTIFICATIONS].find(found).sort(INBOX_ORDER).batch_size(query["limit"] + 1),
                        query["limit"], key=lambda item: (item["created_at"], item["_id"]), keep=keep)
    by_notification = {}
    for d in db[DELIVERIES].find({"notification_id": {"$in": [i["_id"] for i in items]}}):
        by_notification.setdefault(d["notification_id"], []).append(d)
    return [(item, by_notification.get(item["_id"], [])) for item in items], after


def mark_read(db, recipient: str, notification_id: str, now: datetime) -> bool:
    result = db[NOTIFICATIONS].update_one({"_id": notification_id, "recipient": recipient},
                                          {"$set": {"read_at": now}})
    return result.matched_count == 1


def claim_due(db, now: datetime, lease_s: float) -> dict | None:
    """Take one due delivery for ``lease_s`` seconds; no other instance gets it meanwhile."""
    return db[DELIVERIES].find_one_and_update(
        {"status": "pending", "due_at": {"$lte": now},
         "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}]},
        {"$set": {"lease_until": now + timedelta(seconds=lease_s)}, "$inc": {"attempts": 1}},
        sort=[("due_at", ASCENDING)], return_document=ReturnDocument.AFTER,
    )


def finish(db, delivery_id: str, status: str, now: datetime, error: str | None = None, session=None) -> None:
    fields = {"status": status, "lease_until": None, "last_error": error}
    if status == "sent":
        fields["sent_at"] = now
    db[DELIVERIES].update_one({"_id": delivery_id}, {"$set": fields}, session=session)


def retry_later(db, delivery_id: str, due_at: datetime, error: str) -> None:
    db[DELIVERIES].update_one({"_id": delivery_id},
                              {"$set": {"due_at": due_at, "lease_until": None, "last_error": error}})


def held_due(db, now: datetime) -> list[dict]:
    return list(db[DELIVERIES].find({"status": "held", "due_at": {"$lte": now}}).sort("created_at", ASCENDING))


def mark_digested(db, delivery_ids: list[str], digest_id: str, session=None) -> None:
    db[DELIVERIES].update_many({"_id": {"$in": delivery_ids}, "status": "held"},
                               {"$set": {"status": "digested", "digest_id": digest_id}}, session=session)


def delivery_counts(db) -> dict:
    rows = db[DELIVERIES].aggregate([{"$group": {"_id": {"channel": "$channel", "status": "$status"},
                                                 "n": {"$sum": 1}}}])
    return {(r["_id"]["channel"], r["_id"]["status"]): r["n"] for r in rows}
