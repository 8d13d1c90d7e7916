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
from collections import Counter
from datetime import datetime, timezone

from prometheus_client import Counter as PrometheusCounter

from contracts import parse_envelope_or_unknown
from contracts.registry import plain
from services.common.web import Conflict
from services.reports import activity, profile

log = logging.getLogger(__name__)

PROFILE_TYPES = {"resident.registered", "resident.updated", "resident.moved", "resident.departed"}

UNKNOWN_SEEN = PrometheusCounter("linli_reports_unknown_messages_total",
                       "Messages of a type or version reports has no contract for (kept, not projected).",
                       ["type"])


class RebuildRunning(Conflict):
    code = "rebuild_running"


def apply(store, envelopes, session, zone) -> None:
    """The messages' effect on every projection (in a few writes however many messages)."""
    unknown = Counter(profile.key(f"{e.type}:v{e.version}") for e in envelopes if not e.known)
    if unknown:
        store.count_unknown(dict(unknown), session)
    known = [e for e in envelopes if e.known]
    residents = [e for e in known if e.type in PROFILE_TYPES]
    if residents:
        profile.apply(store, residents, session, zone)
    activity.apply(store, known, session, zone)


def record(store, envelopes, session, zone) -> None:
    """Append ``envelopes`` and, unless a rebuild is running, apply them (months in the time ``zone``)."""
    state = store.projection_state(session)
    rebuilding = bool(state.get("rebuilding"))
    store.append([
        {"_id": e.id, "type": e.type, "known": e.known, "time": e.time, "community": e.community,
         "wire": _wire(e), "generation": None if rebuilding else state.get("generation", 0)}
        for e in envelopes], session)
    for envelope in envelopes:
        if not envelope.known:
            UNKNOWN_SEEN.labels(envelope.type).inc()
    if rebuilding:
        # Writing the state document makes this transaction conflict with the
        # rebuild's last one, so the rebuild cannot finish without these.
        store.count_arrived_during_rebuild(len(envelopes), session)
        return
    apply(store, envelopes, session, zone)


def _wire(envelope) -> dict:
    """The message as received (every field, known or not), else rebuilt from the envelope."""
    received = getattr(envelope, "received", None)
    return received if received is not None else {**envelope.to_wire(), "data": plain(envelope.data)}


def rebuild(store, transaction, zone, page_size: int = 500, grace_s: float = 2.0) -> dict:
    """Drop every projection and apply the whole history again; returns what was done.

    ``transaction``: the outbox's unit of work (``work(session, publish)``; a rebuild publishes nothing).
    ``grace_s``: how long to let transactions that began before the rebuild
    (and so still apply to the projections) finish before they are dropped.
    """
    started = datetime.now(timezone.utc)
    if store.projection_state().get("rebuilding"):
        raise RebuildRunning("a rebuild is already running")
    generation = store.begin_rebuild()
    time.sleep(grace_s)
    store.drop_projections()
    # The ids once, then each page by id: a sorted range query per page would read the
    # history again for every page. What arrives after this list is taken below.
    ids = store.history_ids()
    applied = 0
    for start in range(0, len(ids), page_size):
        applied += _apply_page(store, transaction, store.history_of(ids[start:start + page_size]), generation, zone)

    def finish(session, publish):
        late = store.history_not_of(generation, page_size, session)
        if not late:
            store.end_rebuild(session)
        return late

    while late := transaction(finish):  # what arrived meanwhile, until nothing is left
        applied += _apply_page(store, transaction, late, generation, zone)
    seconds = (datetime.now(timezone.utc) - started).total_seconds()
    log.info("reports: rebuilt the projections from %d messages in %.1f s", applied, seconds)
    return {"messages": applied, "seconds": round(seconds, 3), "generation": generation}


def _apply_page(store, transaction, docs, generation, zone) -> int:
    def work(session, publish):
        apply(store, [parse_envelope_or_unknown(doc["wire"])[0] for doc in docs], session, zone)
        store.mark_applied([d["_id"] for d in docs], generation, session)
        return len(docs)

    return transaction(work)


