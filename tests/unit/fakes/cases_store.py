"""An in-memory ``services.cases.store.CasesStore`` for unit tests of the cases service's use cases: no database.

It keeps the records as the database would (copies in, copies out) and checks a step's ``version`` as the
real store does, so a test sees a lost race as the service would.
"""
from __future__ import annotations

import copy
from datetime import datetime

from bson import ObjectId

from services.cases.store import CANDIDATE_FIELDS


class FakeCasesStore:
    """``CasesStore``'s interface, kept in a dictionary."""

    def __init__(self):
        self.cases: dict[str, dict] = {}

    def new_id(self) -> str:
        return str(ObjectId())

    def case(self, case_id: str, session=None) -> dict | None:
        return copy.deepcopy(self.cases.get(case_id))

    def add_case(self, record: dict, session) -> None:
        if record["_id"] in self.cases:
            raise KeyError(f"case {record['_id']} exists")
        self.cases[record["_id"]] = copy.deepcopy(record)

    def submitted_between(self, type_code: str, since: datetime, until: datetime, session=None) -> list[dict]:
        return [{key: copy.deepcopy(value) for key, value in case.items() if key in CANDIDATE_FIELDS}
                for case in self.cases.values()
                if case["type_code"] == type_code and since <= case["submitted_at"] <= until]

    def save_step(self, case_id: str, version: int, changes: dict, entry: dict, session) -> bool:
        case = self.cases.get(case_id)
        if case is None or case["version"] != version:
            return False
        case.update(copy.deepcopy(changes))
        case["version"] += 1
        case.setdefault("history", []).append(copy.deepcopy(entry))
        return True
