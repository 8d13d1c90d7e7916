"""A lifecycle action on a case: decided by lifecycle.py, stored and announced in one transaction.

``act(store, session, publish, record, action, actor, arguments, now, deadline)`` applies the action to the
case as read in the transaction, saves the step if nobody moved the case meanwhile (else 409 ``case_changed``)
and publishes its fact: ids, codes and times; a reply or a reason stays in the case. ``deadline(case)`` is the
resolve deadline from the case type's SLA, set when the case is dispatched (None where it cannot be known).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from contracts import (CASE_ACCEPTED, CASE_ACKNOWLEDGED, CASE_CALLED_BACK, CASE_CLOSED, CASE_DISPATCHED,
                       CASE_REJECTED, CASE_REOPENED, CASE_RESOLVED)
from services.cases import lifecycle
from services.cases.domain import case_of, changes_of, lifecycle_arguments
from services.common.web import Conflict, NotFound


class CaseChanged(Conflict):
    code = "case_changed"


def act(store, session, publish, case_id: str, action: str, actor: lifecycle.Actor, arguments: dict,
        now: datetime, deadline) -> dict:
    record = store.case(case_id, session)
    if record is None:
        raise NotFound(f"no case with id {case_id}")
    before = case_of(record)
    step = lifecycle.apply(before, action, actor, now, lifecycle_arguments(arguments))
    after = step.case
    if action == "dispatch":
        after = replace(after, resolve_due_at=deadline(record))
    changes = changes_of(after) | _kept_text(action, arguments, now)
    entry = {"action": action, "at": now, "by": actor.party if actor.kind == "department" else actor.kind}
    if not store.save_step(case_id, record["version"], changes, entry, session):
        raise CaseChanged(f"case {case_id} changed meanwhile; read it and try again", {"case_id": case_id})
    base = {"case_id": case_id, "community_id": record["community_id"], "type_code": record["type_code"],
            "state": after.state, "owner": after.owner}
    _announce(publish, step.fact, base | _fact_fields(step, before, after, now),
              subject=case_id, community=record["community_id"])
    return {"id": case_id, "state": after.state, "owner": after.owner}


def _kept_text(action: str, arguments: dict, now: datetime) -> dict:
    """The free text an action brings, kept in the case only."""
    if action == "resolve":
        return {"reply": arguments["reply"], "resolved_at": now}
    if action == "reopen" and arguments.get("reason"):
        return {"reopen_reason": arguments["reason"]}
    return {}


def _fact_fields(step: lifecycle.Step, before: lifecycle.Case, after: lifecycle.Case, now: datetime) -> dict:
    data = step.fact_data
    return {
        "case.accepted": lambda: {"accepted_at": now},
        "case.dispatched": lambda: {"dispatched_at": now, "lead": after.lead, "co_handlers": list(after.co_handlers),
                                    "resolve_due_at": after.resolve_due_at},
        "case.acknowledged": lambda: {"acknowledged_at": now, "by": before.lead},
        "case.rejected": lambda: {"rejected_at": now, "rejected_by": data["rejected_by"],
                                  "reason_code": data["reason_code"], "suggested_owner": data["suggested_owner"]},
        "case.resolved": lambda: {"resolved_at": now, "by": before.lead},
        "case.called_back": lambda: {"called_back_at": now, "satisfaction": data["satisfaction"],
                                     "cause": data["cause"]},
        "case.closed": lambda: {"closed_at": now},
        "case.reopened": lambda: {"reopened_at": now, "cause_code": data["reason_code"],
                                  "times_reopened": data["times_reopened"]},
    }[step.fact]()


def _announce(publish, fact: str, data: dict, **kwargs) -> None:
    """Each type in a publish call of its own: the platform's tools read from the code what cases publishes."""
    {
        "case.accepted": lambda: publish(CASE_ACCEPTED, data, **kwargs),
        "case.dispatched": lambda: publish(CASE_DISPATCHED, data, **kwargs),
        "case.acknowledged": lambda: publish(CASE_ACKNOWLEDGED, data, **kwargs),
        "case.rejected": lambda: publish(CASE_REJECTED, data, **kwargs),
        "case.resolved": lambda: publish(CASE_RESOLVED, data, **kwargs),
        "case.called_back": lambda: publish(CASE_CALLED_BACK, data, **kwargs),
        "case.closed": lambda: publish(CASE_CLOSED, data, **kwargs),
        "case.reopened": lambda: publish(CASE_REOPENED, data, **kwargs),
    }[fact]()
