"""The history of every message reports received, and the projections built from it.

Each message is appended once (its envelope id is the key) together with
its effect on the projections. ``rebuild`` drops the projections and applies
the history again; while it runs, new messages are only appended, and the
rebuild applies them before it hands back to the live path, so nothing is
applied twice or missed.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from collections import Counter

from prometheus_client import Counter as PrometheusCounter
from pymongo import ReturnDocument, UpdateOne

from contracts import parse_envelope_or_unknown
from contracts.registry import plain
from services.common.web import Conflict
from services.reports import activity, profile

log = logging.getLogger(__name__)

HISTORY = "history"
STATE = "projection_state"
UNKNOWN = "unknown_messages"
PROJECTIONS = (profile.RESIDENTS, profile.COMMUNITIES, activity.MONTHLY, UNKNOWN)
PROFILE_TYPES = {"resident.registered", "resident.updated", "resident.moved", "resident.departed"}

UNKNOWN_SEEN = PrometheusCounter("linli_reports_unknown_messages_total",
                       "Messages of a type or version reports has no contract for (kept, not projected).",
                       ["type"])


class RebuildRunning(Conflict):
    code = "rebuild_running"


def apply(db, envelopes, session, zone) -> None:
    """The messages' effect on every projection (in a few writes however many messages)."""
    unknown = Counter(profile.key(f"{e.type}:v{e.version}") for e in envelopes if not e.known)
    if unknown:
        db[UNKNOWN].bulk_write([UpdateOne({"_id": label}, {"$inc": {"count": n}}, upsert=True)
                                for label, n in unknown.items()], ordered=False, session=session)
    known = [e for e in envelopes if e.known]
    residents = [e for e in known if e.type in PROFILE_TYPES]
    if residents:
        profile.apply(db, residents, session, zone)
    activity.apply(db, known, session, zone)


def record(db, envelopes, session, zone) -> None:
    """Append ``envelopes`` and, unless a rebuild is running, apply them (months in the time ``zone``)."""
    state = db[STATE].find_one({"_id": "state"}, session=session) or {}
    rebuilding = bool(state.get("rebuilding"))
    db[HISTORY].insert_many([
        {"_id": e.id, "type": e.type, "known": e.known, "time": e.time, "community": e.community,
         "wire": _wire(e), "generation": None if rebuilding else state.get("generation", 0)}
        for e in envelopes], session=session)
    for envelope in envelopes:
        if not envelope.known:
            UNKNOWN_SEEN.labels(envelope.type).inc()
    if rebuilding:
        # Writing the state document makes this transaction conflict with the
        # rebuild's last one, so the rebuild cannot finish without these.
        db[STATE].update_one({"_id": "state"}, {"$inc": {"arrived_during_rebuild": len(envelopes)}}, session=session)
        return
    apply(db, envelopes, session, zone)


def _wire(envelope) -> dict:
    """The message as received (every field, known or not), else rebuilt from the envelope."""
    received = getattr(envelope, "received", None)
    return received if received is not None else {**envelope.to_wire(), "data": plain(envelope.data)}


def _in_transaction(client, work):
    with client.start_session() as session:
        return session.with_transaction(work)


def rebuild(db, client, zone, page_size: int = 500, grace_s: float = 2.0) -> dict:
    """Drop every projection and apply the whole history again; returns what was done.

    ``grace_s``: how long to let transactions that began before the rebuild
    (and so still apply to the projections) finish before they are dropped.
    """
    started = datetime.now(timezone.utc)
    if (db[STATE].find_one({"_id": "state"}) or {}).get("rebuilding"):
        raise RebuildRunning("a rebuild is already running")
    state = db[STATE].find_one_and_update(
        {"_id": "state"}, {"$set": {"rebuilding": True}, "$inc": {"generation": 1}},
        upsert=True, return_document=ReturnDocument.AFTER)
    generation = state["generation"]
    time.sleep(grace_s)
    for name in PROJECTIONS:
        db[name].delete_many({})
    # The ids once, then each page by id: a sorted range query per page would read the
    # history again for every page. What arrives after this list is taken below.
    ids = [doc["_id"] for doc in db[HISTORY].find({}, {"_id": 1})]
    applied = 0
    for start in range(0, len(ids), page_size):
        page = list(db[HISTORY].find({"_id": {"$in": ids[start:start + page_size]}}))
        applied += _apply_page(db, client, page, generation, zone)

    def finish(session):
        late = list(db[HISTORY].find({"generation": {"$ne": generation}}, session=session).limit(page_size))
        if late:
            return late
        db[STATE].update_one({"_id": "state"}, {"$set": {"rebuilding": False, "arrived_during_rebuild": 0}},
                             session=session)
        return []

    while late := _in_transaction(client, finish):  # what arrived meanwhile, until nothing is left
        applied += _apply_page(db, client, late, generation, zone)
    seconds = (datetime.now(timezone.utc) - started).total_seconds()
    log.info("reports: rebuilt the projections from %d messages in %.1f s", applied, seconds)
    return {"messages": applied, "seconds": round(seconds, 3), "generation": generation}


def _apply_page(db, client, docs, generation, zone) -> int:
    def work(session):
        apply(db, [parse_envelope_or_unknown(doc["wire"])[0] for doc in docs], session, zone)
        db[HISTORY].update_many({"_id": {"$in": [d["_id"] for d in docs]}}, {"$set": {"generation": generation}},
                                session=session)
        return len(docs)

    return _in_transaction(client, work)


def unknown_counts(db) -> dict:
    return {doc["_id"]: doc["count"] for doc in db[UNKNOWN].find()}
