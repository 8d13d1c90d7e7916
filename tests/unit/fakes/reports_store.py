"""An in-memory ``ReportsStore`` (the reports' repository) and outbox (its unit of work), for unit tests of
the reports' use cases: no broker, no database.

It keeps the documents the real store keeps, as plain dictionaries, and follows the rules the use cases
rely on: the history is keyed by envelope id (a second copy is a ``DuplicateKeyError``, and the copies
before it in the same insert are written, as an ordered ``insert_many`` does), counters given as
``{dotted path: n}`` are added into nested documents as ``$inc`` does, and a transaction that fails
leaves nothing (``FakeUnitOfWork``).
"""
from __future__ import annotations

import copy

from pymongo.errors import DuplicateKeyError

from tests.unit import fakes

TABLES = ("history", "state", "unknown", "residents", "profiles", "activity", "assessed")


def _add(document: dict, counts: dict) -> None:
    for path, n in counts.items():
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = node.get(leaf, 0) + n


class FakeReportsStore:
    def __init__(self):
        self.history: dict[str, dict] = {}  # by envelope id, in the order appended
        self.state: dict = {}
        self.unknown: dict[str, int] = {}
        self.residents: dict[str, dict] = {}
        self.profiles: dict[str, dict] = {}  # by community
        self.activity: dict[str, dict] = {}  # by "community:month"
        self.assessed: set[str] = set()
        self.meanwhile = None  # run once as the rebuild reads its next page: a message arriving meanwhile

    # -- the history and the rebuild's state ------------------------------------------------------

    def projection_state(self, session=None) -> dict:
        return copy.deepcopy(self.state)

    def append(self, records: list[dict], session) -> None:
        for record in records:
            if record["_id"] in self.history:
                raise DuplicateKeyError(f"E11000 duplicate key error collection: history {record['_id']}")
            self.history[record["_id"]] = copy.deepcopy(record)

    def count_arrived_during_rebuild(self, count: int, session) -> None:
        self.state["arrived_during_rebuild"] = self.state.get("arrived_during_rebuild", 0) + count

    def begin_rebuild(self) -> int:
        self.state["rebuilding"] = True
        self.state["generation"] = self.state.get("generation", 0) + 1
        return self.state["generation"]

    def drop_projections(self) -> None:
        self.unknown, self.residents, self.profiles, self.activity = {}, {}, {}, {}

    def history_ids(self) -> list:
        return list(self.history)

    def history_of(self, ids: list) -> list[dict]:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return [copy.deepcopy(self.history[i]) for i in ids if i in self.history]

    def history_not_of(self, generation: int, limit: int, session) -> list[dict]:
        return [copy.deepcopy(r) for r in self.history.values() if r["generation"] != generation][:limit]

    def mark_applied(self, ids: list, generation: int, session) -> None:
        for i in ids:
            self.history[i]["generation"] = generation

    def end_rebuild(self, session) -> None:
        self.state.update(rebuilding=False, arrived_during_rebuild=0)

    # -- writing the projections --------------------------------------------------------------------

    def count_unknown(self, counts: dict[str, int], session) -> None:
        for label, n in counts.items():
            self.unknown[label] = self.unknown.get(label, 0) + n

    def resident_states(self, resident_ids: list[str], session) -> dict[str, dict]:
        return {i: copy.deepcopy(self.residents[i]) for i in resident_ids if i in self.residents}

    def save_resident_states(self, states: dict[str, dict], session) -> None:
        self.residents.update({i: {**copy.deepcopy(state), "_id": i} for i, state in states.items()})

    def add_to_communities(self, counters: dict[str, dict], session) -> None:
        for community, counts in counters.items():
            _add(self.profiles.setdefault(community, {"_id": community}), counts)

    def add_to_months(self, counters: dict[tuple[str, str], dict], session) -> None:
        for (community, month), counts in counters.items():
            document = self.activity.setdefault(f"{community}:{month}", {"_id": f"{community}:{month}"})
            document.update(community_id=community, month=month)
            _add(document, counts)

    # -- reading the projections --------------------------------------------------------------------

    def unknown_counts(self) -> dict[str, int]:
        return dict(self.unknown)

    def community_ids(self) -> list[str]:
        return sorted(set(self.profiles) | {doc["community_id"] for doc in self.activity.values()})

    def community_known(self, community_id: str) -> bool:
        return community_id in self.community_ids()

    def community(self, community_id: str) -> dict | None:
        return copy.deepcopy(self.profiles.get(community_id))

    def communities(self, community_ids: list[str]) -> dict[str, dict]:
        return {c: copy.deepcopy(self.profiles[c]) for c in community_ids if c in self.profiles}

    def every_community(self) -> list[dict]:
        return copy.deepcopy(list(self.profiles.values()))

    def month(self, community_id: str, month: str) -> dict | None:
        return copy.deepcopy(self.activity.get(f"{community_id}:{month}"))

    def months(self, community_ids: list[str], month: str) -> dict[str, dict]:
        return {c: copy.deepcopy(self.activity[f"{c}:{month}"]) for c in community_ids
                if f"{c}:{month}" in self.activity}

    def months_in(self, month: str) -> list[dict]:
        return [copy.deepcopy(doc) for doc in self.activity.values() if doc["month"] == month]

    def months_of(self, community_id: str, first: str, last: str) -> list[dict]:
        return sorted((copy.deepcopy(doc) for doc in self.activity.values()
                       if doc["community_id"] == community_id and first <= doc["month"] <= last),
                      key=lambda doc: doc["month"])

    # -- assessments -------------------------------------------------------------------------------

    def claim_assessment(self, month: str, session=None) -> None:
        if month in self.assessed:
            raise DuplicateKeyError(f"E11000 duplicate key error collection: assessments {month}")
        self.assessed.add(month)


class FakeUnitOfWork(fakes.FakeUnitOfWork):
    """The outbox's ``transaction(work)`` (and ``exactly_once``'s transaction around a handler) over a
    ``FakeReportsStore`` (``tests.unit.fakes.FakeUnitOfWork``)."""

    tables = TABLES
