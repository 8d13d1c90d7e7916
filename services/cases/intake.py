"""Intake through the native API: a case checked against its type, stored, announced; likely duplicates named.

``submit(store, session, publish, command, catalogue, now)`` is one transaction (the outbox's unit of work):
the case is stored with its description, and ``case.submitted`` says only ids, codes and times.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from contracts import CASE_SUBMITTED
from services.cases import duplicates, lifecycle
from services.cases.domain import attribute_errors
from services.common.web import ValidationFailed

DUPLICATE_RULE = duplicates.DuplicateRule()


def check(command: dict, catalogue) -> dict:
    """The case type of ``command``, or a 400 naming the field: an unknown type, attributes it refuses."""
    case_type = catalogue.types.get(command["type_code"])
    if case_type is None:
        raise ValidationFailed("the case is not valid", {"fields": {"type_code": [
            f"no case type {command['type_code']!r}; known: {sorted(catalogue.types)}"]}})
    errors = attribute_errors(case_type, command["attributes"])
    if errors:
        raise ValidationFailed("the case is not valid", {"fields": {"attributes": errors}})
    return case_type


def _at_intake(record: dict) -> duplicates.CaseAtIntake:
    location = record.get("location")
    return duplicates.CaseAtIntake(
        case_id=record["_id"], type_code=record["type_code"], submitted_at=record["submitted_at"],
        grid_id=record.get("grid_id"),
        location=duplicates.Location(location["lat"], location["lon"]) if location else None)


def likely_duplicates(store, record: dict, session=None) -> list[duplicates.LikelyDuplicate]:
    since = record["submitted_at"] - timedelta(days=DUPLICATE_RULE.window_days)
    candidates = store.submitted_between(record["type_code"], since, record["submitted_at"], session)
    return duplicates.likely_duplicates(_at_intake(record), [_at_intake(c) for c in candidates], DUPLICATE_RULE)


def submit(store, session, publish, command: dict, catalogue, now: datetime) -> dict:
    """The case stored and ``case.submitted`` published; returns its id and the likely duplicates."""
    check(command, catalogue)
    case_id = store.new_id()
    record = {"_id": case_id, **{k: command[k] for k in ("community_id", "type_code", "description", "language",
                                                         "resident_id", "location", "grid_id", "attributes")},
              "channel": "api", "submitted_at": now, "state": "submitted", "owner": lifecycle.COMMUNITY,
              "lead": None, "co_handlers": [], "running_clocks": [], "paused_clocks": [], "times_reopened": 0,
              "version": 0, "history": [{"action": "submit", "at": now, "by": "committee"}]}
    found = likely_duplicates(store, record, session)
    record["likely_duplicates"] = [match.case_id for match in found]
    store.add_case(record, session)
    publish(CASE_SUBMITTED, {
        "case_id": case_id, "community_id": record["community_id"], "type_code": record["type_code"],
        "state": "submitted", "owner": lifecycle.COMMUNITY, "submitted_at": now, "channel": "api",
        "language": record["language"], "grid_id": record["grid_id"], "resident_id": record["resident_id"],
        "likely_duplicates": record["likely_duplicates"]}, subject=case_id, community=record["community_id"])
    return {"id": case_id, "state": "submitted", "likely_duplicates": [
        {"id": match.case_id, "same_grid": match.same_grid,
         "distance_m": None if match.distance_m is None else round(match.distance_m, 1),
         "submitted_at": match.submitted_at.isoformat()} for match in found]}
