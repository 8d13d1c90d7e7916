"""Every database access of the reports service's use cases: the repository of cosmicpython.

``ReportsStore`` is held by the service, as its outbox is, and handed to the use cases (``history``,
``profile``, ``activity``, ``figures``, and the gauges), so they run against an in-memory fake in a
unit test (tests/unit/fakes/reports_store.py). It keeps the history of every message received, the
state of the rebuild, and the projections (the residents' states, each community's counters, each
community-month's counters, the unknown messages' counts), all as plain documents; counters are
given as ``{dotted path: increment}``. Writes take the ``session`` of the transaction they belong to
(``exactly_once``'s for a batch of messages, the outbox's ``transaction(work)`` for a rebuild's
page). Each method is one database command unless it says otherwise; the commands per batch are a
budget (tests/integration/test_reports_budget.py).
"""
from __future__ import annotations

from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, ReplaceOne, ReturnDocument, UpdateOne

from services.common.mongo import MongoDatabase

HISTORY = "history"
STATE = "projection_state"
UNKNOWN = "unknown_messages"
RESIDENTS = "profile_residents"  # one resident's categorical state, with the version of each field
COMMUNITIES = "profile_communities"  # one community's profile counters
MONTHLY = "activity_monthly"  # one community-month's activity counters, ``_id`` ``community:month``
ASSESSMENTS = "assessments"
PROJECTIONS = (RESIDENTS, COMMUNITIES, MONTHLY, UNKNOWN)


def ensure_indexes(database) -> None:
    """The indexes of the months' reads (``MongoDatabase``'s ``prepare``, before the first request)."""
    database[MONTHLY].create_index([("community_id", ASCENDING), ("month", ASCENDING)])
    database[MONTHLY].create_index([("month", ASCENDING)])


def _by_id(found) -> dict:
    return {doc["_id"]: doc for doc in found}


class ReportsStore:
    """The reports service's repository over its database (pymongo's; one serves every worker)."""

    def __init__(self, database):
        self._database = database

    # -- the history and the rebuild's state ------------------------------------------------------

    def projection_state(self, session=None) -> dict:
        """``{"rebuilding", "generation", "arrived_during_rebuild"}`` as far as set (empty before the first rebuild)."""
        return self._database[STATE].find_one({"_id": "state"}, session=session) or {}

    def append(self, records: list[dict], session) -> None:
        """Messages to the history (``_id``: the envelope id); ``DuplicateKeyError`` if one is there already."""
        self._database[HISTORY].insert_many(records, session=session)

    def count_arrived_during_rebuild(self, count: int, session) -> None:
        """Writes the state document: the transaction conflicts with the rebuild's last one."""
        self._database[STATE].update_one({"_id": "state"}, {"$inc": {"arrived_during_rebuild": count}}, session=session)

    def begin_rebuild(self) -> int:
        """The state marked rebuilding, under a new generation; returns that generation."""
        state = self._database[STATE].find_one_and_update(
            {"_id": "state"}, {"$set": {"rebuilding": True}, "$inc": {"generation": 1}},
            upsert=True, return_document=ReturnDocument.AFTER)
        return state["generation"]

    def drop_projections(self) -> None:
        """Every projection emptied (a command per projection)."""
        for name in PROJECTIONS:
            self._database[name].delete_many({})

    def history_ids(self) -> list:
        return [doc["_id"] for doc in self._database[HISTORY].find({}, {"_id": 1})]

    def history_of(self, ids: list) -> list[dict]:
        """The history's messages with these ids, as stored (``wire``: the message as received)."""
        return list(self._database[HISTORY].find({"_id": {"$in": ids}}))

    def history_not_of(self, generation: int, limit: int, session) -> list[dict]:
        """Up to ``limit`` messages the rebuild of ``generation`` has not applied (they arrived meanwhile)."""
        return list(self._database[HISTORY].find({"generation": {"$ne": generation}}, session=session).limit(limit))

    def mark_applied(self, ids: list, generation: int, session) -> None:
        self._database[HISTORY].update_many({"_id": {"$in": ids}}, {"$set": {"generation": generation}},
                                            session=session)

    def end_rebuild(self, session) -> None:
        self._database[STATE].update_one({"_id": "state"}, {"$set": {"rebuilding": False, "arrived_during_rebuild": 0}},
                                     session=session)

    # -- writing the projections --------------------------------------------------------------------

    def count_unknown(self, counts: dict[str, int], session) -> None:
        """``{label: n}`` added to the unknown messages' counts."""
        self._database[UNKNOWN].bulk_write([UpdateOne({"_id": label}, {"$inc": {"count": n}}, upsert=True)
                                        for label, n in counts.items()], ordered=False, session=session)

    def resident_states(self, resident_ids: list[str], session) -> dict[str, dict]:
        """``{resident id: state}`` of those that have one."""
        return _by_id(self._database[RESIDENTS].find({"_id": {"$in": resident_ids}}, session=session))

    def save_resident_states(self, states: dict[str, dict], session) -> None:
        """``{resident id: state}`` replacing what each had, in one write."""
        self._database[RESIDENTS].bulk_write([ReplaceOne({"_id": i}, {**state, "_id": i}, upsert=True)
                                          for i, state in states.items()], ordered=False, session=session)

    def add_to_communities(self, counters: dict[str, dict], session) -> None:
        """``{community: {path: n}}`` added to the communities' profile counters, in one write."""
        self._database[COMMUNITIES].bulk_write([UpdateOne({"_id": community}, {"$inc": counts}, upsert=True)
                                            for community, counts in counters.items()], ordered=False, session=session)

    def add_to_months(self, counters: dict[tuple[str, str], dict], session) -> None:
        """``{(community, month): {path: n}}`` added to the community-months' counters, in one write."""
        self._database[MONTHLY].bulk_write([UpdateOne({"_id": f"{community}:{month}"},
                                                  {"$inc": counts, "$set": {"community_id": community, "month": month}},
                                                  upsert=True)
                                        for (community, month), counts in counters.items()],
                                       ordered=False, session=session)

    # -- reading the projections --------------------------------------------------------------------

    def unknown_counts(self) -> dict[str, int]:
        return {doc["_id"]: doc["count"] for doc in self._database[UNKNOWN].find()}

    def community_ids(self) -> list[str]:
        """Every community with a profile or a month of activity, sorted (two commands)."""
        return sorted(set(self._database[COMMUNITIES].distinct("_id"))
                      | set(self._database[MONTHLY].distinct("community_id")))

    def community_known(self, community_id: str) -> bool:
        """Whether the community has a profile or, if not, a month of activity (one command, or two)."""
        return self._database[COMMUNITIES].find_one({"_id": community_id}, {"_id": 1}) is not None or \
            self._database[MONTHLY].find_one({"community_id": community_id}, {"_id": 1}) is not None

    def community(self, community_id: str) -> dict | None:
        """The community's profile counters."""
        return self._database[COMMUNITIES].find_one({"_id": community_id})

    def communities(self, community_ids: list[str]) -> dict[str, dict]:
        """``{community: profile counters}`` of those of ``community_ids`` that have them."""
        return _by_id(self._database[COMMUNITIES].find({"_id": {"$in": community_ids}})
                      .batch_size(len(community_ids) + 1))

    def every_community(self) -> list[dict]:
        """Every community's profile counters."""
        return list(self._database[COMMUNITIES].find())

    def month(self, community_id: str, month: str) -> dict | None:
        """The community-month's counters."""
        return self._database[MONTHLY].find_one({"_id": f"{community_id}:{month}"})

    def months(self, community_ids: list[str], month: str) -> dict[str, dict]:
        """``{community: counters}`` of ``month`` for those of ``community_ids`` that have any."""
        found = self._database[MONTHLY].find({"_id": {"$in": [f"{c}:{month}" for c in community_ids]}}) \
            .batch_size(len(community_ids) + 1)
        return {doc["community_id"]: doc for doc in found}

    def months_in(self, month: str) -> list[dict]:
        """Every community's counters of ``month``."""
        return list(self._database[MONTHLY].find({"month": month}))

    def months_of(self, community_id: str, first: str, last: str) -> list[dict]:
        """The community's months ``first``..``last`` that have counters, in order."""
        return list(self._database[MONTHLY].find({"community_id": community_id, "month": {"$gte": first, "$lte": last}})
                    .sort("month", 1))

    # -- assessments -------------------------------------------------------------------------------

    def claim_assessment(self, month: str, session=None) -> None:
        """That ``month`` is assessed; ``DuplicateKeyError`` if any instance did so already. With ``session``,
        the record commits with the assessment's outbox messages (or not at all)."""
        self._database[ASSESSMENTS].insert_one({"_id": month}, session=session)


class Store(DependencyProvider):
    """The service's ``ReportsStore`` for each worker, over the database of the service's ``MongoDatabase``
    (connected in its ``setup``, so ready when the containers start)."""

    def start(self):
        mongo = next(d for d in self.container.dependencies if isinstance(d, MongoDatabase))
        self.store = ReportsStore(mongo.client[mongo.database_name])

    def get_dependency(self, worker_ctx):
        return self.store
