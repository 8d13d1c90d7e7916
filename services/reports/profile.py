"""The community profile: who lives there, by residence type, nationality, age and tags.

Counters per community are kept equal to the sum over its residents' current
states: every message moves one resident from an old state to a new one, and
the counters get ``-buckets(old) + buckets(new)``. A resident's state is
last-writer-wins per field (by message time), so the final state, and with
it every counter, is the same whatever order the messages arrive in, and a
rebuild from the history gives the live figures exactly.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.common.community_time import DEFAULT_TIME_ZONE, community_zone

CATEGORICAL = ("community_id", "residence_type", "nationality", "birth_year", "tags", "status")
AGE_BANDS = ((0, 14, "0-14"), (15, 34, "15-34"), (35, 59, "35-59"), (60, 200, "60+"))
DEFAULT_ZONE = community_zone()
# The zone of the version strings (``version_of``), fixed: versions stored already compare with them as text.
VERSION_ZONE = ZoneInfo(DEFAULT_TIME_ZONE)


def key(value) -> str:
    """A value usable as a MongoDB field name (no dots, no leading $)."""
    return str(value).replace(".", "\uff0e").replace("$", "\uff04")


def month_of(moment, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """The month of a date, or of a moment in the communities' time ``zone``."""
    if isinstance(moment, datetime):
        return moment.astimezone(zone).strftime("%Y-%m")
    if isinstance(moment, date):
        return moment.strftime("%Y-%m")
    return str(moment)[:7]


def buckets(state: dict | None) -> Counter:
    """The counters one resident adds to its community's profile (nothing unless registered and present)."""
    if not state or not state.get("registered") or state.get("status") != "active" or not state.get("community_id"):
        return Counter()
    counts = Counter({"residents_total": 1, f"by_residence_type.{key(state.get('residence_type'))}": 1,
                      f"by_nationality.{key(state.get('nationality'))}": 1,
                      f"by_birth_year.{key(state.get('birth_year') or 'unknown')}": 1})
    for tag in state.get("tags") or ():
        counts[f"by_tag.{key(tag)}"] += 1
    return counts


def version_of(envelope) -> str:
    """Orders changes: by message time, and by id between messages of the same instant."""
    return f"{envelope.time.astimezone(VERSION_ZONE).isoformat()}|{envelope.id}"


def merge(old: dict | None, changes: dict, version: str) -> dict:
    """The resident's state after ``changes``: a field takes a value only from a newer ``version``."""
    state = dict(old or {"versions": {}})
    versions = dict(state.get("versions") or {})
    for field, value in changes.items():
        if field not in versions or versions[field] < version:
            state[field] = value
            versions[field] = version
    state["versions"] = versions
    return state


def changes_of(envelope) -> tuple[str, dict]:
    """(resident id, the categorical fields the message sets)."""
    data, kind = envelope.data, envelope.type
    if kind == "resident.registered":
        fields = {f: data.get(f) for f in CATEGORICAL if f != "status"}
        return data["resident_id"], {**fields, "status": "active", "registered": True}
    if kind == "resident.updated":
        return data["resident_id"], {f: data[f] for f in CATEGORICAL if f in data and f != "community_id"}
    if kind == "resident.moved":
        return data["resident_id"], {"community_id": data["community_id"], "residence_type": data["residence_type"]}
    if kind == "resident.departed":
        return data["resident_id"], {"status": "departed"}
    raise ValueError(f"not a profile message: {kind}")


def flows(envelope, zone: ZoneInfo = DEFAULT_ZONE) -> list[tuple[str, str]]:
    """Monthly arrivals and departures a message records: [(community, counter path)]."""
    data, kind = envelope.data, envelope.type
    if kind == "resident.registered":
        return [(data["community_id"], f"arrivals.{month_of(envelope.time, zone)}")]
    if kind == "resident.moved":
        month = month_of(data["moved_on"])
        return [(data["from_community_id"], f"departures.{month}"), (data["community_id"], f"arrivals.{month}")]
    if kind == "resident.departed":
        return [(data["community_id"], f"departures.{month_of(data['departed_on'])}")]
    return []


def transition(old: dict | None, envelope, zone: ZoneInfo = DEFAULT_ZONE) -> tuple[dict, dict[str, Counter]]:
    """The resident's new state and the counter changes per community. Pure."""
    _, changes = changes_of(envelope)
    new = merge(old, changes, version_of(envelope))
    deltas: dict[str, Counter] = {}
    for path, n in buckets(old).items():
        deltas.setdefault(old["community_id"], Counter())[path] -= n
    for path, n in buckets(new).items():
        deltas.setdefault(new["community_id"], Counter())[path] += n
    for community, path in flows(envelope, zone):
        deltas.setdefault(community, Counter())[path] += 1
    return new, deltas


def apply(store, envelopes, session, zone: ZoneInfo) -> None:
    """Many messages at once: one read of the residents' states, one write of them all, one write of
    the communities' counters (an $inc per community)."""
    ids = [changes_of(envelope)[0] for envelope in envelopes]
    states = store.resident_states(ids, session)
    totals: dict[str, Counter] = {}
    for resident_id, envelope in zip(ids, envelopes):
        states[resident_id], deltas = transition(states.get(resident_id), envelope, zone)
        for community, counts in deltas.items():
            totals.setdefault(community, Counter()).update(counts)
    store.save_resident_states({i: states[i] for i in set(ids)}, session)
    moved = nonzero(totals)
    if moved:
        store.add_to_communities(moved, session)


def nonzero(totals: dict) -> dict:
    """The counters that moved, per key (a key whose counters all cancel out is left alone)."""
    moved = {target: {path: n for path, n in counts.items() if n} for target, counts in totals.items()}
    return {target: counts for target, counts in moved.items() if counts}


def age_bands(by_birth_year: dict, today: date) -> dict:
    bands = Counter()
    for year, n in by_birth_year.items():
        if year == "unknown" or not n:
            bands["unknown"] += n
            continue
        age = today.year - int(year)
        bands[next((label for low, high, label in AGE_BANDS if low <= age <= high), "unknown")] += n
    return {label: bands.get(label, 0) for *_, label in AGE_BANDS} | {"unknown": bands.get("unknown", 0)}


def top(counts: dict, n: int) -> dict:
    ranked = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))
    shown = dict(ranked[:n])
    rest = sum(v for _, v in ranked[n:])
    return shown | ({"other": rest} if rest else {})


def view(doc: dict, today: date, top_n: int = 10) -> dict:
    total = doc.get("residents_total", 0)
    by_type = {k: v for k, v in doc.get("by_residence_type", {}).items() if v}
    return {
        "community_id": doc["_id"],
        "residents_total": total,
        "residents_by_residence_type": by_type,
        "foreign_share": round(by_type.get("foreign", 0) / total, 4) if total else 0.0,
        "residents_by_nationality": top(doc.get("by_nationality", {}), top_n),
        "residents_by_age_band": age_bands(doc.get("by_birth_year", {}), today),
        "residents_by_tag": {k: v for k, v in sorted(doc.get("by_tag", {}).items()) if v},
        "arrivals_by_month": dict(sorted(doc.get("arrivals", {}).items())),
        "departures_by_month": dict(sorted(doc.get("departures", {}).items())),
    }
