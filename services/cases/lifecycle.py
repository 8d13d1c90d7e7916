"""A case's lifecycle (接诉即办) as an explicit state machine: pure Python, no database, no clock of its own.

``apply(case, action, actor, at, arguments)`` checks the transition table and the action's guard, and returns
the ``Step``: the case after it, its owner, the SLA clocks to start, stop, pause, resume or extend, and the
fact to publish (ids and codes only; free text such as a reply never goes into a fact). Anything else raises
``IllegalTransition`` naming the rule (the service answers it as HTTP 409).

Decisions the issue leaves open:
- Whoever must act next owns the case: the community committee (首接负责, first receiver responsible) until
  a department acknowledges it, then the lead department until it resolves, rejects or the case is reopened.
  A department that rejects returns the case to the committee; the committee may keep it by dispatching to
  ``community`` itself, and then nobody can reject it any more.
- ``closed`` is terminal except for ``reopen``: a resident unsatisfied with the reply may reopen a resolved,
  called-back or closed case (with a reason code, one of the dissatisfaction causes the reports count); it
  returns to the committee, which re-dispatches.
- A merged child is ``merged`` and takes no action of its own; it is closed when its parent closes.
- ``resolve_due_at`` is set by the service (it knows the catalogue's SLA and the working-day calendar); the
  machine only reads it for the extension guard, clears it when the resolve clock stops, and moves it when an
  extension is granted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime

COMMUNITY = "community"  # the community committee itself, as the responsible party
# The partners service's rule for a partner id (services do not import one another).
PARTY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")

STATES = ("submitted", "accepted", "dispatched", "acknowledged", "waiting_for_resident", "resolved",
          "called_back", "closed", "merged")
OPEN_STATES = ("submitted", "accepted", "dispatched", "acknowledged", "waiting_for_resident")
ROLES = ("committee", "lead", "co_handler", "resident", "system")
CLOCKS = ("acknowledge", "first_contact", "resolve", "call_back")
REJECT_REASONS = ("outside_jurisdiction", "outside_area", "duplicate", "legal_procedure_required",
                  "insufficient_information")
DISSATISFACTION_CAUSES = ("current_policy", "recurring_problem", "long_legal_procedure",
                          "overlapping_jurisdiction", "other")
SATISFACTION = ("satisfied", "basically_satisfied", "unsatisfied")
DEPARTMENT_STATES = ("dispatched", "acknowledged", "waiting_for_resident")  # owned by the lead department


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    roles: frozenset[str]
    target: str | None  # None: the state does not change
    fact: str
    starts: tuple[str, ...] = ()
    stops: tuple[str, ...] = ()  # only the clocks that run (or are paused) are stopped
    pauses: bool = False  # every running clock
    resumes: bool = False  # every paused clock


def _t(sources, roles, target, fact, **clocks) -> Transition:
    return Transition(frozenset(sources.split()), frozenset(roles.split()), target, f"case.{fact}", **clocks)


DEPARTMENT_CLOCKS = ("acknowledge", "first_contact", "resolve")
TABLE: dict[str, Transition] = {
    "accept": _t("submitted", "committee", "accepted", "accepted"),
    "dispatch": _t("accepted", "committee", "dispatched", "dispatched", starts=DEPARTMENT_CLOCKS),
    "acknowledge": _t("dispatched", "lead", "acknowledged", "acknowledged", stops=("acknowledge",)),
    "reject": _t("dispatched acknowledged", "lead", "accepted", "rejected", stops=CLOCKS),
    "contact": _t("acknowledged", "lead co_handler", None, "contacted", stops=("first_contact",)),
    "request_extension": _t("acknowledged", "lead", None, "extension_requested"),
    "grant_extension": _t("acknowledged waiting_for_resident", "committee", None, "extension_granted"),
    "refuse_extension": _t("acknowledged waiting_for_resident", "committee", None, "extension_refused"),
    "pause": _t("acknowledged", "lead", "waiting_for_resident", "paused", pauses=True),
    "resume": _t("waiting_for_resident", "lead committee resident system", "acknowledged", "resumed",
                 resumes=True),
    "resolve": _t("acknowledged", "lead", "resolved", "resolved", stops=CLOCKS, starts=("call_back",)),
    "call_back": _t("resolved", "committee system", "called_back", "called_back", stops=("call_back",)),
    "close": _t("called_back merged", "committee system", "closed", "closed"),
    "reopen": _t("resolved called_back closed", "resident committee", "accepted", "reopened", stops=CLOCKS),
    "merge": _t(" ".join(OPEN_STATES), "committee", "merged", "merged", stops=CLOCKS),
}
# Each action's arguments: the required ones and the optional ones; any other is refused.
ARGUMENTS: dict[str, tuple[frozenset, frozenset]] = {
    action: (frozenset(required.split()), frozenset(optional.split())) for action, required, optional in (
        ("dispatch", "lead", "co_handlers"), ("reject", "reason_code", "suggested_owner"),
        ("request_extension", "until", ""), ("resolve", "reply", ""), ("call_back", "satisfaction", "cause"),
        ("reopen", "reason_code", "reason"), ("merge", "parent_id parent_state", ""))}


@dataclass(frozen=True)
class Actor:
    """Who acts: ``committee`` (a community worker), ``department`` (with its partner id), ``resident`` (the
    service has checked it is the case's resident) or ``system``."""

    kind: str
    party: str | None = None


@dataclass(frozen=True)
class Case:
    """What the machine needs to know of a case."""

    case_id: str
    state: str = "submitted"
    owner: str = COMMUNITY
    lead: str | None = None
    co_handlers: tuple[str, ...] = ()
    running_clocks: frozenset[str] = frozenset()
    paused_clocks: frozenset[str] = frozenset()
    resolve_due_at: datetime | None = None
    extension_requested_until: datetime | None = None
    satisfaction: str | None = None
    parent_id: str | None = None
    times_reopened: int = 0


@dataclass(frozen=True)
class ClockChange:
    change: str  # start | stop | pause | resume | extend
    clock: str
    until: datetime | None = None


@dataclass(frozen=True)
class Step:
    case: Case
    action: str
    at: datetime
    clocks: tuple[ClockChange, ...]
    fact: str
    fact_data: dict = field(default_factory=dict)  # ids and codes only


class IllegalTransition(Exception):
    """An action the lifecycle refuses: ``code`` names the rule; details give the state, the action and the
    actions allowed in that state."""

    status = 409

    def __init__(self, code: str, message: str, case: Case, action: str, **details):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = {"state": case.state, "action": action, "allowed_actions": allowed_actions(case),
                        **details}


def allowed_actions(case: Case, actor: Actor | None = None) -> list[str]:
    """The actions the table allows in the case's state (for ``actor`` if given), guards not evaluated."""
    roles = roles_of(case, actor) if actor else set(ROLES)
    return [name for name, rule in TABLE.items() if case.state in rule.sources and rule.roles & roles]


def roles_of(case: Case, actor: Actor) -> set[str]:
    """The actor's roles on this case: a department is the lead or a co-handler only of the cases dispatched
    to it; the committee is also the lead of a case it keeps."""
    if actor.kind == "committee":
        return {"committee", "lead"} if case.lead == COMMUNITY else {"committee"}
    if actor.kind == "department":
        return ({"lead"} if actor.party and actor.party == case.lead else set()) | (
            {"co_handler"} if actor.party in case.co_handlers else set())
    return {actor.kind} & {"resident", "system"}


def apply(case: Case, action: str, actor: Actor, at: datetime, arguments: dict | None = None) -> Step:
    """The step ``actor`` takes by ``action`` at ``at``, or ``IllegalTransition``."""
    if not (isinstance(at, datetime) and at.tzinfo is not None):
        raise ValueError("at is a time with a zone")  # the caller's mistake, not a refused transition
    arguments = dict(arguments or {})
    rule = TABLE.get(action)
    if rule is None or case.state not in rule.sources:
        raise IllegalTransition("illegal_transition", f"a case in state {case.state!r} cannot {action!r}",
                                case, action)
    if not rule.roles & roles_of(case, actor):
        raise IllegalTransition("actor_not_allowed", f"{action!r} is for {sorted(rule.roles)} of this case",
                                case, action, allowed_roles=sorted(rule.roles))
    required, optional = ARGUMENTS.get(action, (frozenset(), frozenset()))
    if missing := sorted(required - arguments.keys()):
        raise IllegalTransition(f"{missing[0]}_required", f"{action!r} needs {missing}", case, action)
    if unknown := sorted(arguments.keys() - required - optional):
        raise IllegalTransition("unknown_arguments", f"{action!r} takes no {unknown}", case, action)
    changed, data = GUARDS_AND_EFFECTS.get(action, _no_change)(case, arguments, at, action)
    return _step(case, rule, action, at, changed, data)


def _step(case: Case, rule: Transition, action: str, at: datetime, changed: dict, data: dict) -> Step:
    running, paused = set(case.running_clocks), set(case.paused_clocks)
    clocks = [ClockChange("stop", clock) for clock in CLOCKS if clock in rule.stops and clock in running | paused]
    running -= set(rule.stops)
    paused -= set(rule.stops)
    if rule.pauses:
        clocks += [ClockChange("pause", clock) for clock in CLOCKS if clock in running]
        running, paused = set(), paused | running
    if rule.resumes:
        clocks += [ClockChange("resume", clock) for clock in CLOCKS if clock in paused]
        running, paused = running | paused, set()
    clocks += [ClockChange("start", clock) for clock in rule.starts]
    running |= set(rule.starts)
    if "extend" in changed:
        clocks.append(changed.pop("extend"))
    state = rule.target or case.state
    changed.setdefault("lead", case.lead)
    owner = changed["lead"] if state in DEPARTMENT_STATES else COMMUNITY
    if "resolve" not in running | paused:
        changed["resolve_due_at"] = None
    if state not in ("acknowledged", "waiting_for_resident"):
        changed["extension_requested_until"] = None
    after = replace(case, state=state, owner=owner, running_clocks=frozenset(running),
                    paused_clocks=frozenset(paused), **changed)
    return Step(after, action, at, tuple(clocks), rule.fact,
                {"case_id": case.case_id, "state": state, "owner": owner, **data})


def _no_change(case, arguments, at, action):
    return {}, {}


def _is_party(value) -> bool:
    return isinstance(value, str) and bool(PARTY_ID.match(value))


# Guards and effects, one per action that has either: (case, arguments, at, action) -> (changed fields, fact data).
def _dispatch(case, arguments, at, action):
    lead, co_handlers = arguments["lead"], arguments.get("co_handlers") or ()
    if not _is_party(lead):
        raise IllegalTransition("lead_invalid", "the lead is a partner id or 'community'", case, action)
    if not (isinstance(co_handlers, (list, tuple)) and all(_is_party(party) for party in co_handlers)
            and len(set(co_handlers)) == len(co_handlers) and not {lead, COMMUNITY} & set(co_handlers)):
        raise IllegalTransition("co_handlers_invalid", "co-handlers are distinct partner ids, neither the lead "
                                "nor the community", case, action)
    return {"lead": lead, "co_handlers": tuple(co_handlers)}, {"lead": lead, "co_handlers": list(co_handlers)}


def _reject(case, arguments, at, action):
    reason_code, suggested_owner = arguments["reason_code"], arguments.get("suggested_owner")
    if case.lead == COMMUNITY:
        raise IllegalTransition("first_receiver_responsible", "the community committee cannot reject a case it "
                                "keeps (首接负责)", case, action)
    if reason_code not in REJECT_REASONS:
        raise IllegalTransition("reason_code_unknown", f"a reason code is one of {list(REJECT_REASONS)}", case,
                                action, reason_codes=list(REJECT_REASONS))
    if suggested_owner is not None and (not _is_party(suggested_owner) or suggested_owner == case.lead):
        raise IllegalTransition("suggested_owner_invalid", "the suggested owner is another partner id, "
                                "'community' or none", case, action)
    return {"lead": None, "co_handlers": ()}, {"rejected_by": case.lead, "reason_code": reason_code,
                                               "suggested_owner": suggested_owner}


def _request_extension(case, arguments, at, action):
    until = arguments["until"]
    if case.extension_requested_until is not None:
        raise IllegalTransition("extension_pending", "an extension is already waiting for the committee", case,
                                action)
    if case.resolve_due_at is None or at >= case.resolve_due_at:
        raise IllegalTransition("extension_after_deadline", "an extension is asked for before the deadline",
                                case, action, resolve_due_at=case.resolve_due_at)
    if not (isinstance(until, datetime) and until.tzinfo is not None and until > case.resolve_due_at):
        raise IllegalTransition("until_invalid", "the new deadline is a time with a zone, after the current one",
                                case, action)
    return {"extension_requested_until": until}, {"until": until}


def _decide_extension(case, arguments, at, action):
    until = case.extension_requested_until
    if until is None:
        raise IllegalTransition("no_extension_requested", "no extension is waiting for a decision", case, action)
    if action == "refuse_extension":
        return {"extension_requested_until": None}, {"until": until}
    return ({"extension_requested_until": None, "resolve_due_at": until,
             "extend": ClockChange("extend", "resolve", until)}, {"until": until})


def _resolve(case, arguments, at, action):
    reply = arguments["reply"]
    if not (isinstance(reply, str) and reply.strip()):
        raise IllegalTransition("reply_required", "a case is resolved with a reply to the resident", case, action)
    return {"satisfaction": None}, {}  # the reply is personal text: stored by the service, never in the fact


def _call_back(case, arguments, at, action):
    satisfaction, cause = arguments["satisfaction"], arguments.get("cause")
    if satisfaction not in SATISFACTION:
        raise IllegalTransition("satisfaction_unknown", f"satisfaction is one of {list(SATISFACTION)}", case,
                                action)
    if (cause in DISSATISFACTION_CAUSES) != (satisfaction == "unsatisfied"):  # the reports count each cause
        raise IllegalTransition("cause_invalid", f"an unsatisfied answer, and only it, has a cause, one of "
                                f"{list(DISSATISFACTION_CAUSES)}", case, action)
    return {"satisfaction": satisfaction}, {"satisfaction": satisfaction, "cause": cause}


def _reopen(case, arguments, at, action):
    if arguments["reason_code"] not in DISSATISFACTION_CAUSES:
        raise IllegalTransition("reason_code_unknown", f"a reason code is one of {list(DISSATISFACTION_CAUSES)}",
                                case, action, reason_codes=list(DISSATISFACTION_CAUSES))
    if not isinstance(arguments.get("reason", ""), str):
        raise IllegalTransition("reason_invalid", "the reason is a text", case, action)
    times = case.times_reopened + 1
    return ({"lead": None, "co_handlers": (), "satisfaction": "unsatisfied", "times_reopened": times},
            {"reason_code": arguments["reason_code"], "times_reopened": times})


def _merge(case, arguments, at, action):
    parent_id, parent_state = arguments["parent_id"], arguments["parent_state"]
    if not (isinstance(parent_id, str) and parent_id and parent_id != case.case_id):
        raise IllegalTransition("parent_invalid", "a case merges into another case", case, action)
    if parent_state not in OPEN_STATES:
        raise IllegalTransition("parent_not_open", f"the parent is open ({list(OPEN_STATES)})", case, action,
                                parent_state=parent_state)
    return {"parent_id": parent_id, "lead": None, "co_handlers": ()}, {"parent_id": parent_id}


GUARDS_AND_EFFECTS = {"dispatch": _dispatch, "reject": _reject, "request_extension": _request_extension,
                      "grant_extension": _decide_extension, "refuse_extension": _decide_extension,
                      "resolve": _resolve, "call_back": _call_back, "reopen": _reopen, "merge": _merge}
