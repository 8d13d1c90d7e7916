"""The cases service's inputs and what it shows: pure Python, no database, broker or clock.

- ``SubmitCase``: a case as the native API takes it (a community worker, for a resident or anonymous);
  ``attribute_errors`` checks its extra attributes against the case type's Open311 attributes.
- ``ACTIONS``: the lifecycle actions the API offers, each with the schema of its arguments (the rules of
  the transition itself are lifecycle.py's).
- ``view``: a case as the committee or a department reads it (a department does not see who the resident is).
"""
from __future__ import annotations

import math
from datetime import datetime

from marshmallow import RAISE, Schema, fields, validate

from services.cases import lifecycle

LANGUAGE = validate.Regexp(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$", error="a language tag such as zh-CN or en")
PARTY = validate.Regexp(lifecycle.PARTY_ID.pattern, error="a partner id, or 'community'")
MAX_ATTRIBUTE_TEXT = 2000


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Location(Strict):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lon = fields.Float(required=True, validate=validate.Range(min=-180, max=180))


class SubmitCase(Strict):
    community_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    type_code = fields.String(required=True, validate=validate.Length(min=1, max=48))
    description = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    language = fields.String(required=True, validate=LANGUAGE)
    resident_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))
    location = fields.Nested(Location, load_default=None, allow_none=True)
    grid_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))
    attributes = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=48)), values=fields.Raw(),
                             load_default=dict)


class NoArguments(Strict):
    pass


class Dispatch(Strict):
    lead = fields.String(required=True, validate=PARTY)
    co_handlers = fields.List(fields.String(validate=PARTY), load_default=list, validate=validate.Length(max=20))


class Reject(Strict):
    reason_code = fields.String(required=True, validate=validate.OneOf(lifecycle.REJECT_REASONS))
    suggested_owner = fields.String(load_default=None, allow_none=True, validate=PARTY)


class Resolve(Strict):
    reply = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class CallBack(Strict):
    satisfaction = fields.String(required=True, validate=validate.OneOf(lifecycle.SATISFACTION))
    cause = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(lifecycle.DISSATISFACTION_CAUSES))


class Reopen(Strict):
    reason_code = fields.String(required=True, validate=validate.OneOf(lifecycle.DISSATISFACTION_CAUSES))
    reason = fields.String(validate=validate.Length(max=2000))


# The actions this slice offers (each has its fact in contracts/cases.py); the others of lifecycle.TABLE
# (contact, extensions, pause and resume, merge) come with their facts.
ACTIONS: dict[str, type[Schema]] = {
    "accept": NoArguments, "dispatch": Dispatch, "acknowledge": NoArguments, "reject": Reject,
    "resolve": Resolve, "call_back": CallBack, "close": NoArguments, "reopen": Reopen}


def lifecycle_arguments(arguments: dict) -> dict:
    """The loaded arguments as lifecycle.apply takes them (an optional argument left out is absent)."""
    return {name: value for name, value in arguments.items() if value is not None}


def attribute_errors(case_type: dict, given: dict) -> dict:
    """``{attribute code: [message]}`` for what ``given`` breaks of the type's Open311 attributes."""
    errors: dict[str, list[str]] = {}
    known = {attribute["code"]: attribute for attribute in case_type["attributes"]}
    for code in sorted(set(given) - set(known)):
        errors[code] = [f"not an attribute of case type {case_type['code']!r}; known: {sorted(known)}"]
    for code, attribute in known.items():
        if code not in given or given[code] is None:
            if attribute["required"]:
                errors[code] = ["required by this case type"]
            continue
        problem = _attribute_problem(attribute, given[code])
        if problem:
            errors[code] = [problem]
    return errors


def _attribute_problem(attribute: dict, value) -> str | None:
    datatype = attribute["datatype"]
    keys = [item["key"] for item in attribute.get("values", [])]
    if datatype in ("string", "text"):
        ok = isinstance(value, str) and 0 < len(value) <= MAX_ATTRIBUTE_TEXT
        return None if ok else f"a text of 1 to {MAX_ATTRIBUTE_TEXT} characters"
    if datatype == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a number"
    if datatype == "datetime":
        return None if _is_zoned_time(value) else "an ISO 8601 time with a zone"
    if datatype == "singlevaluelist":
        return None if isinstance(value, str) and value in keys else f"one of {keys}"
    ok = (isinstance(value, list) and value and all(isinstance(item, str) and item in keys for item in value)
          and len(set(value)) == len(value))
    return None if ok else f"distinct values, at least one, of {keys}"


def _is_zoned_time(value) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def case_of(record: dict) -> lifecycle.Case:
    """The state machine's view of a stored case."""
    return lifecycle.Case(
        case_id=record["_id"], state=record["state"], owner=record["owner"], lead=record.get("lead"),
        co_handlers=tuple(record.get("co_handlers") or ()), running_clocks=frozenset(record.get("running_clocks") or ()),
        paused_clocks=frozenset(record.get("paused_clocks") or ()), resolve_due_at=record.get("resolve_due_at"),
        extension_requested_until=record.get("extension_requested_until"), satisfaction=record.get("satisfaction"),
        parent_id=record.get("parent_id"), times_reopened=record.get("times_reopened", 0))


def changes_of(case: lifecycle.Case) -> dict:
    """What a step changes in the stored case."""
    return {"state": case.state, "owner": case.owner, "lead": case.lead, "co_handlers": list(case.co_handlers),
            "running_clocks": sorted(case.running_clocks), "paused_clocks": sorted(case.paused_clocks),
            "resolve_due_at": case.resolve_due_at, "extension_requested_until": case.extension_requested_until,
            "satisfaction": case.satisfaction, "parent_id": case.parent_id, "times_reopened": case.times_reopened}


VIEW_FIELDS = ("community_id", "type_code", "description", "language", "location", "grid_id", "attributes",
               "channel", "submitted_at", "state", "owner", "lead", "co_handlers", "resolve_due_at", "satisfaction",
               "times_reopened", "reply", "likely_duplicates")


def view(record: dict, actor: lifecycle.Actor) -> dict:
    """The case as ``actor`` reads it: a department sees no resident id (issue #17: not without consent)."""
    shown = {"id": record["_id"], **{name: record.get(name) for name in VIEW_FIELDS},
             "allowed_actions": [a for a in lifecycle.allowed_actions(case_of(record), actor) if a in ACTIONS],
             "history": [{k: entry[k] for k in ("action", "at", "by")} for entry in record.get("history", [])]}
    if actor.kind == "committee":
        shown["resident_id"] = record.get("resident_id")
    return shown
