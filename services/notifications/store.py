"""The notifications database: what the service knows of residents and events, and what it sent.

Projections (``audience``, ``events``, ``registrations``) are built from the
messages the service consumes, so deciding who to tell needs no call to
another service; contact addresses are the exception, read at send time, and
an event's title and venue, read once per event (``event_view``).
"""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING, UpdateMany, UpdateOne

from services.common import leases
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
MIGRATIONS = "migrations"  # one-off rewrites done, by name
HOLDING_REGISTRATION = ("confirmed", "waitlisted", "offered")
INBOX_ORDER = [("created_at", DESCENDING), ("_id", DESCENDING)]


class LeaseLost(Exception):
    """Another instance took over the work this one held (its lease ran out): this page is theirs."""


def ensure_indexes(db) -> None:
    # _id last: a fan-out's pages are ranges of _id within its audience, walked in the index's order.
    db[AUDIENCE].create_index([("community_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)])
    db[REGISTRATIONS].create_index([("event_id", ASCENDING), ("status", ASCENDING)])
    db[EVENTS].create_index([("status", ASCENDING), ("starts_at", ASCENDING)])
    db[NOTIFICATIONS].create_index([("recipient", ASCENDING), *INBOX_ORDER])
    db[DELIVERIES].create_index([("status", ASCENDING), ("due_at", ASCENDING)])
    db[DELIVERIES].create_index([("notification_id", ASCENDING)])
    db[DELIVERIES].create_index([(leases.CLAIMABLE, ASCENDING)])
    db[FAN_OUTS].create_index([(leases.CLAIMABLE, ASCENDING)])
    _make_due_work_claimable(db)


def _make_due_work_claimable(db) -> None:
    """Deliveries and fan-outs pending from before ``claimable_at`` get theirs: once per database
    (marked in ``migrations``, so a later start costs one look-up, not a read of every pending one)."""
    if db[MIGRATIONS].find_one({"_id": "claimable_at"}) is not None:
        return
    for old in db[DELIVERIES].find({"status": "pending", leases.CLAIMABLE: {"$exists": False}}):
        due = max(old["due_at"], old.get("lease_until") or old["due_at"])
        db[DELIVERIES].update_one({"_id": old["_id"]}, {"$set": {leases.CLAIMABLE: due}})
    db[FAN_OUTS].update_many({"status": "pending", leases.CLAIMABLE: {"$exists": False}},
                             {"$set": {leases.CLAIMABLE: leases.EPOCH}})
    db[MIGRATIONS].update_one({"_id": "claimable_at"}, {"$set": {"done": True}}, upsert=True)


# -- what the service knows of residents --------------------------------------

def upsert_resident(db, facts: dict, session=None) -> None:
    """One resident's facts (an update or a move): one upsert."""
    fields = _audience_fields(facts)
    db[AUDIENCE].update_one({"_id": facts["resident_id"]}, {"$set": fields, "$setOnInsert": {"status": "active"}},
                            upsert=True, session=session)


def _audience_fields(facts: dict) -> dict:
    fields = {k: facts[k] for k in ("community_id", "preferred_language", "tags", "consent") if k in facts}
    if fields.get("consent") is None:
        fields.pop("consent", None)
    return fields


def upsert_residents(db, facts_list: list[dict], session=None) -> None:
    """What notifications needs to know of residents: those it has not seen inserted in one write,
    the others updated (one look-up tells which; an upsert each costs the store a statement each)."""
    if len(facts_list) == 1:  # one alone: one upsert is one statement, as the look-up would be
        upsert_resident(db, facts_list[0], session=session)
        return
    documents = {}
    for facts in facts_list:
        documents[facts["resident_id"]] = _audience_fields(facts)  # twice in a batch: the later facts win
    if not documents:
        return
    known = {d["_id"] for d in db[AUDIENCE].find({"_id": {"$in": list(documents)}}, {"_id": 1}, session=session)
             .batch_size(len(documents) + 1)}
    fresh = [{"_id": resident_id, **fields, "status": "active"}
             for resident_id, fields in documents.items() if resident_id not in known]
    if fresh:  # one written meanwhile by another instance fails the transaction, whose retry updates it
        db[AUDIENCE].insert_many(fresh, ordered=False, session=session)
    updates = [UpdateOne({"_id": resident_id}, {"$set": fields})
               for resident_id, fields in documents.items() if resident_id in known and fields]
    if updates:
        db[AUDIENCE].bulk_write(updates, ordered=False, session=session)


def set_resident_status(db, resident_id: str, status: str, session=None) -> None:
    db[AUDIENCE].update_one({"_id": resident_id}, {"$set": {"status": status}}, session=session)


def resident_community(db, resident_id: str) -> str | None:
    doc = db[AUDIENCE].find_one({"_id": resident_id}, {"community_id": 1})
    return doc["community_id"] if doc else None


def recipients(db, query: dict, defaults: Preferences, session=None) -> list[Recipient]:
    """Active residents matching ``query`` with their preferences, in two queries however many."""
    residents = list(db[AUDIENCE].find({**query, "status": "active"}, session=session).batch_size(1000))
    return _with_preferences(db, residents, defaults, session)


def audience_pages(db, query: dict, after: str, page_size: int, defaults: Preferences):
    """``(recipients, last)`` of the active residents matching ``query`` with ids after ``after``, in id
    order, ``page_size`` a page; ``last`` is True for the final page. One query walks the whole
    audience (a round trip per page, not a query and sort of the audience per page)."""
    found = db[AUDIENCE].find({**query, "status": "active", "_id": {"$gt": after}}).sort("_id", ASCENDING)
    found = iter(found.batch_size(page_size))
    page = list(itertools.islice(found, page_size))
    while page:
        following = list(itertools.islice(found, page_size))
        yield _with_preferences(db, page, defaults), not following
        page = following


def _with_preferences(db, residents: list[dict], defaults: Preferences, session=None) -> list[Recipient]:
    ids = [r["_id"] for r in residents]
    found = db[PREFERENCES].find({"_id": {"$in": ids}}, session=session).batch_size(len(ids) + 1)
    prefs = {p["_id"]: p for p in found} if ids else {}
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


def set_registrations(db, changes: list[tuple[dict, str]], session=None) -> None:
    """``(facts, status)`` of registrations, in one round trip, in the order given (the last word wins)."""
    if changes:
        db[REGISTRATIONS].bulk_write([UpdateOne(
            {"_id": f"{facts['event_id']}:{facts['resident_id']}"},
            {"$set": {"event_id": facts["event_id"], "resident_id": facts["resident_id"], "status": status}},
            upsert=True) for facts, status in changes], ordered=True, session=session)


def registrant_ids(db, event_id: str, statuses=HOLDING_REGISTRATION, session=None) -> list[str]:
    found = db[REGISTRATIONS].find({"event_id": event_id, "status": {"$in": list(statuses)}},
                                   {"resident_id": 1}, session=session)
    return [r["resident_id"] for r in found]


# -- fan-out jobs ---------------------------------------------------------------------

def add_fan_out(db, job: dict, session=None) -> None:
    db[FAN_OUTS].insert_one(job, session=session)


def claim_fan_out(db, now: datetime, lease_s: float) -> dict | None:
    """A pending fan-out job, held for ``lease_s`` seconds (renewed by every page), or None."""
    claimed = leases.claim_due(db[FAN_OUTS], now, lease_s, leases.token(), limit=1)
    return claimed[0] if claimed else None


def advance_fan_out(db, job: dict, after: str | None, now: datetime, lease_s: float, session=None) -> None:
    """Record a page as done and hold the job ``lease_s`` seconds more; ``after`` None means the
    audience is exhausted. ``LeaseLost`` (so the page's transaction writes nothing) if another
    instance has taken the job over."""
    done = ({"after": after, leases.CLAIMABLE: now + timedelta(seconds=lease_s)} if after is not None
            else {"status": "done", leases.CLAIMABLE: None})
    held = db[FAN_OUTS].update_one({"_id": job["_id"], leases.OWNER: job[leases.OWNER]}, {"$set": done},
                                   session=session)
    if held.matched_count == 0:
        raise LeaseLost(f"fan-out {job['_id']} was taken over by another instance")


class FanOuts:
    """The fan-out jobs and the audience they page through, as ``fan_outs.run`` sees them (the functions
    above, on the service's database): the seam a unit test fills with an in-memory fake."""

    def __init__(self, db):
        self.db = db

    def claim(self, now: datetime, lease_s: float) -> dict | None:
        return claim_fan_out(self.db, now, lease_s)

    def audience_pages(self, query: dict, after: str, page_size: int, defaults: Preferences):
        return audience_pages(self.db, query, after, page_size, defaults)

    def advance(self, job: dict, after: str | None, now: datetime, lease_s: float, session=None) -> None:
        advance_fan_out(self.db, job, after, now, lease_s, session)


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


def claim_due(db, now: datetime, lease_s: float, owner: str, limit: int) -> list[dict]:
    """Up to ``limit`` deliveries due at ``now``, held for ``lease_s`` seconds (``leases.claim``)."""
    return leases.claim_due(db[DELIVERIES], now, lease_s, leases.token(owner), limit, inc={"attempts": 1})


def due_batches(db, now_fn, lease_s: float, batch: int, limit: int):
    """Deliveries due now, claimed ``batch`` at a time (three round trips a batch), at most ``limit``."""
    for ids in leases.due_batches(db[DELIVERIES], now_fn(), batch, limit):
        claimed = leases.claim(db[DELIVERIES], ids, now_fn(), lease_s, leases.token(), inc={"attempts": 1})
        if claimed:
            yield claimed


def finish_batch(db, ended: list, now: datetime, session=None) -> list:
    """Record how each of ``ended`` (``delivery.Attempt``) ended, where this instance still holds the
    lease; returns those it recorded (a lease that ran out passed the delivery on). Endings that write
    the same fields (a batch's sent ones, its failures with one reason) share one ``update_many``: a
    statement costs the store far more than a document does."""
    if not ended:
        return []
    groups: dict[tuple, list] = {}
    for attempt in ended:
        fields = _ending(attempt, now)
        key = (attempt.claimed[leases.OWNER], tuple(sorted(fields.items(), key=lambda item: item[0])))
        groups.setdefault(key, []).append(attempt.claimed["_id"])
    writes = [UpdateMany({"_id": {"$in": ids}, leases.OWNER: owner}, {"$set": dict(fields)})
              for (owner, fields), ids in groups.items()]
    result = db[DELIVERIES].bulk_write(writes, ordered=False, session=session)
    held = leases.held_by_claim(db[DELIVERIES], [e.claimed for e in ended], result, session=session)
    return [e for e in ended if e.claimed["_id"] in held]


def _ending(attempt, now: datetime) -> dict:
    if attempt.outcome == "released":  # not tried: due again at once, and not counted as an attempt
        return {leases.CLAIMABLE: now, "lease_until": None, "attempts": attempt.claimed["attempts"] - 1}
    if attempt.outcome == "retry":
        return {"due_at": attempt.retry_at, leases.CLAIMABLE: attempt.retry_at, "lease_until": None,
                "last_error": attempt.error}
    fields = {"status": attempt.outcome, leases.CLAIMABLE: None, "lease_until": None, "last_error": attempt.error}
    if attempt.outcome == "sent":
        fields["sent_at"] = now
    return fields


def held_due(db, now: datetime) -> list[dict]:
    return list(db[DELIVERIES].find({"status": "held", "due_at": {"$lte": now}}).sort("created_at", ASCENDING))


def mark_digested(db, delivery_ids: list[str], digest_id: str, session=None) -> None:
    db[DELIVERIES].update_many({"_id": {"$in": delivery_ids}, "status": "held"},
                               {"$set": {"status": "digested", "digest_id": digest_id}}, session=session)
