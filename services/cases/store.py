"""Where the cases service keeps its cases: every query its use cases make.

``CasesStore`` is the repository the use cases (``intake``, ``handling``) are handed, so they run against an
in-memory fake in a unit test (tests/unit/fakes/cases_store.py). It gives and takes plain documents;
``session`` is the caller's transaction (the outbox's ``transaction``). Each method is one database command.
"""
from __future__ import annotations

from datetime import datetime

from bson import ObjectId
from nameko.extensions import DependencyProvider

from services.cases.documents import CASES
from services.common.mongo import MongoDatabase

CANDIDATE_FIELDS = {"_id": 1, "type_code": 1, "submitted_at": 1, "grid_id": 1, "location": 1, "state": 1}


class CasesStore:
    """The cases service's repository over its database (pymongo's; one serves every worker)."""

    def __init__(self, database):
        self._cases = database[CASES]

    def new_id(self) -> str:
        """A new case id (no command)."""
        return str(ObjectId())

    def case(self, case_id: str, session=None) -> dict | None:
        """The case, or None if there is none (whatever ``case_id`` holds)."""
        if not isinstance(case_id, str) or not ObjectId.is_valid(case_id):
            return None
        return self._cases.find_one({"_id": case_id}, session=session)

    def add_case(self, record: dict, session) -> None:
        self._cases.insert_one(record, session=session)

    def submitted_between(self, type_code: str, since: datetime, until: datetime, session=None) -> list[dict]:
        """The cases of ``type_code`` submitted in [since, until] (what duplicates.py compares; its index)."""
        return list(self._cases.find({"type_code": type_code, "submitted_at": {"$gte": since, "$lte": until}},
                                     CANDIDATE_FIELDS, session=session))

    def save_step(self, case_id: str, version: int, changes: dict, entry: dict, session) -> bool:
        """``changes`` made and ``entry`` added to the case's history if the case is still at ``version``
        (then one more); False if it moved meanwhile."""
        return self._cases.update_one(
            {"_id": case_id, "version": version},
            {"$set": changes, "$inc": {"version": 1}, "$push": {"history": entry}}, session=session).modified_count == 1


class Store(DependencyProvider):
    """The service's ``CasesStore`` for each worker, over the database of its ``MongoDatabase``."""

    def start(self):
        mongo = next(d for d in self.container.dependencies if isinstance(d, MongoDatabase))
        self.store = CasesStore(mongo.client[mongo.database_name])

    def get_dependency(self, worker_ctx):
        return self.store
