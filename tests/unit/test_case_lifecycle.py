"""A case's lifecycle: the table, each guard, and random sequences that find no illegal transition accepted."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from services.cases import lifecycle
from services.cases.lifecycle import COMMUNITY, Actor, Case, ClockChange, IllegalTransition, apply

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))
COMMITTEE = Actor("committee")
LIGHTING = Actor("department", "city-lighting")
URBAN = Actor("department", "urban-management")
RESIDENT = Actor("resident")
SYSTEM = Actor("system")


def run(case, *steps):
    """Apply (action, actor, arguments) steps in turn; the last step."""
    step = None
    for action, actor, arguments in steps:
        step = apply(case, action, actor, T0, arguments)
        case = step.case
    return step


def dispatched(lead="city-lighting", co_handlers=()):
    return run(Case("case-1"), ("accept", COMMITTEE, {}),
               ("dispatch", COMMITTEE, {"lead": lead, "co_handlers": list(co_handlers)})).case


def acknowledged(due_in=timedelta(days=3), **kwargs):
    case = dispatched(**kwargs)
    step = apply(case, "acknowledge", Actor("department", case.lead) if case.lead != COMMUNITY else COMMITTEE, T0)
    return replace(step.case, resolve_due_at=T0 + due_in)  # the service sets it from the catalogue's SLA


def refused(case, action, actor, arguments=None, at=T0) -> IllegalTransition:
    with pytest.raises(IllegalTransition) as raised:
        apply(case, action, actor, at, arguments)
    return raised.value


def test_the_happy_path_from_submission_to_closing():
    case, facts, owners = Case("case-1"), [], []
    for action, actor, arguments in [
            ("accept", COMMITTEE, {}),
            ("dispatch", COMMITTEE, {"lead": "city-lighting", "co_handlers": ["urban-management"]}),
            ("acknowledge", LIGHTING, {}), ("contact", URBAN, {}),
            ("resolve", LIGHTING, {"reply": "灯具已更换,恢复照明。"}),
            ("call_back", SYSTEM, {"satisfaction": "satisfied"}), ("close", COMMITTEE, {})]:
        step = apply(case, action, actor, T0, arguments)
        case = step.case
        facts.append(step.fact)
        owners.append(step.case.owner)
    assert facts == ["case.accepted", "case.dispatched", "case.acknowledged", "case.contacted", "case.resolved",
                     "case.called_back", "case.closed"]
    assert owners == [COMMUNITY, "city-lighting", "city-lighting", "city-lighting", COMMUNITY, COMMUNITY,
                      COMMUNITY]
    assert case.state == "closed" and case.satisfaction == "satisfied"
    assert case.running_clocks == frozenset() and case.paused_clocks == frozenset()


def test_the_clocks_each_step_starts_and_stops():
    step = run(Case("case-1"), ("accept", COMMITTEE, {}), ("dispatch", COMMITTEE, {"lead": "city-lighting"}))
    assert step.clocks == tuple(ClockChange("start", clock) for clock in ("acknowledge", "first_contact", "resolve"))
    step = apply(step.case, "acknowledge", LIGHTING, T0)
    assert step.clocks == (ClockChange("stop", "acknowledge"),)
    step = apply(step.case, "resolve", LIGHTING, T0, {"reply": "已修复"})
    assert step.clocks == (ClockChange("stop", "first_contact"), ClockChange("stop", "resolve"),
                           ClockChange("start", "call_back"))
    assert step.case.resolve_due_at is None


def test_the_reply_stays_out_of_the_fact():
    step = apply(acknowledged(), "resolve", LIGHTING, T0, {"reply": "灯具已更换"})
    assert "灯具已更换" not in repr(step.fact_data)


@pytest.mark.parametrize("actor", [URBAN, Actor("department", "sanitation"), COMMITTEE, RESIDENT, SYSTEM])
def test_only_the_department_it_was_dispatched_to_acknowledges(actor):
    error = refused(dispatched(co_handlers=["urban-management"]), "acknowledge", actor)
    assert error.code == "actor_not_allowed" and error.details["allowed_roles"] == ["lead"]


def test_an_illegal_transition_names_the_rule_the_state_and_the_allowed_actions():
    error = refused(Case("case-1"), "resolve", COMMITTEE, {"reply": "x"})
    assert (error.code, error.status) == ("illegal_transition", 409)
    assert error.details == {"state": "submitted", "action": "resolve", "allowed_actions": ["accept", "merge"]}
    assert refused(Case("case-1"), "teleport", COMMITTEE).code == "illegal_transition"


@pytest.mark.parametrize("arguments, code", [
    ({}, "reason_code_required"),
    ({"reason_code": "too_busy"}, "reason_code_unknown"),
    ({"reason_code": "outside_jurisdiction", "suggested_owner": "Not An Id"}, "suggested_owner_invalid"),
    ({"reason_code": "outside_jurisdiction", "suggested_owner": "city-lighting"}, "suggested_owner_invalid"),
    ({"reason_code": "outside_jurisdiction", "colour": "red"}, "unknown_arguments"),
])
def test_a_rejection_needs_a_known_reason_code_and_another_owner_or_none(arguments, code):
    assert refused(dispatched(), "reject", LIGHTING, arguments).code == code


def test_a_rejected_case_returns_to_the_committee_which_re_dispatches():
    step = apply(acknowledged(), "reject", LIGHTING, T0,
                 {"reason_code": "outside_jurisdiction", "suggested_owner": "housing-management"})
    assert step.fact == "case.rejected"
    assert (step.case.state, step.case.owner, step.case.lead) == ("accepted", COMMUNITY, None)
    assert step.fact_data["rejected_by"] == "city-lighting"
    assert step.fact_data["suggested_owner"] == "housing-management"
    assert {change.change for change in step.clocks} == {"stop"} and not step.case.running_clocks
    again = apply(step.case, "dispatch", COMMITTEE, T0, {"lead": "housing-management"})
    assert (again.case.state, again.case.owner) == ("dispatched", "housing-management")
    assert refused(again.case, "acknowledge", LIGHTING).code == "actor_not_allowed"


def test_a_case_nobody_owns_stays_with_the_community_committee():
    rejected = apply(dispatched(), "reject", LIGHTING, T0, {"reason_code": "outside_jurisdiction"}).case
    assert rejected.owner == COMMUNITY
    kept = apply(rejected, "dispatch", COMMITTEE, T0, {"lead": COMMUNITY}).case
    assert (kept.state, kept.owner) == ("dispatched", COMMUNITY)
    assert refused(kept, "reject", COMMITTEE, {"reason_code": "outside_jurisdiction"}).code == (
        "first_receiver_responsible")
    assert apply(kept, "acknowledge", COMMITTEE, T0).case.owner == COMMUNITY


@pytest.mark.parametrize("arguments, code", [
    ({"lead": "Bad Id"}, "lead_invalid"),
    ({"lead": "city-lighting", "co_handlers": ["city-lighting"]}, "co_handlers_invalid"),
    ({"lead": "city-lighting", "co_handlers": ["sanitation", "sanitation"]}, "co_handlers_invalid"),
    ({"lead": "city-lighting", "co_handlers": [COMMUNITY]}, "co_handlers_invalid"),
    ({"lead": "city-lighting", "co_handlers": "sanitation"}, "co_handlers_invalid"),
    ({}, "lead_required"),
])
def test_dispatch_names_one_lead_and_distinct_co_handlers(arguments, code):
    accepted = apply(Case("case-1"), "accept", COMMITTEE, T0).case
    assert refused(accepted, "dispatch", COMMITTEE, arguments).code == code


def test_an_extension_is_asked_before_the_deadline_and_decided_by_the_committee():
    case = acknowledged(due_in=timedelta(days=3))
    until = T0 + timedelta(days=8)
    assert refused(case, "request_extension", LIGHTING, {"until": until}, at=T0 + timedelta(days=3)).code == (
        "extension_after_deadline")
    assert refused(case, "request_extension", LIGHTING, {"until": T0 + timedelta(days=2)}).code == "until_invalid"
    assert refused(case, "grant_extension", COMMITTEE).code == "no_extension_requested"
    asked = apply(case, "request_extension", LIGHTING, T0 + timedelta(days=2), {"until": until})
    assert asked.fact == "case.extension_requested" and asked.case.resolve_due_at == T0 + timedelta(days=3)
    assert refused(asked.case, "request_extension", LIGHTING, {"until": until}).code == "extension_pending"
    assert refused(asked.case, "grant_extension", LIGHTING).code == "actor_not_allowed"
    granted = apply(asked.case, "grant_extension", COMMITTEE, T0)
    assert granted.fact == "case.extension_granted" and granted.case.resolve_due_at == until
    assert granted.clocks == (ClockChange("extend", "resolve", until),)
    refused_step = apply(asked.case, "refuse_extension", COMMITTEE, T0)
    assert refused_step.fact == "case.extension_refused"
    assert refused_step.case.resolve_due_at == T0 + timedelta(days=3)
    assert refused_step.case.extension_requested_until is None


def test_waiting_for_the_resident_pauses_the_clock_and_resuming_restarts_it():
    paused = apply(acknowledged(), "pause", LIGHTING, T0)
    assert (paused.fact, paused.case.state) == ("case.paused", "waiting_for_resident")
    assert paused.clocks == (ClockChange("pause", "first_contact"), ClockChange("pause", "resolve"))
    assert paused.case.running_clocks == frozenset() and paused.case.resolve_due_at is not None
    assert refused(paused.case, "resolve", LIGHTING, {"reply": "x"}).code == "illegal_transition"
    resumed = apply(paused.case, "resume", RESIDENT, T0)
    assert (resumed.fact, resumed.case.state) == ("case.resumed", "acknowledged")
    assert resumed.clocks == (ClockChange("resume", "first_contact"), ClockChange("resume", "resolve"))
    assert resumed.case.running_clocks == {"first_contact", "resolve"} and not resumed.case.paused_clocks


@pytest.mark.parametrize("actor", [Actor("visitor"), Actor("department"), Actor("department", "sanitation")])
def test_someone_without_a_part_in_the_case_cannot_resume_it(actor):
    paused = apply(acknowledged(), "pause", LIGHTING, T0).case
    assert refused(paused, "resume", actor).code == "actor_not_allowed"


@pytest.mark.parametrize("reply", ["", "   ", None])
def test_resolving_needs_a_reply(reply):
    assert refused(acknowledged(), "resolve", LIGHTING, {"reply": reply}).code == "reply_required"


def test_an_unsatisfied_resident_reopens_with_a_reason_even_a_closed_case():
    resolved = apply(acknowledged(), "resolve", LIGHTING, T0, {"reply": "已修复"}).case
    called_back = apply(resolved, "call_back", COMMITTEE, T0,
                        {"satisfaction": "unsatisfied", "cause": "current_policy"}).case
    closed = apply(called_back, "close", COMMITTEE, T0).case
    assert lifecycle.allowed_actions(closed) == ["reopen"]
    for case in (resolved, called_back, closed):
        assert refused(case, "reopen", RESIDENT).code == "reason_code_required"
        assert refused(case, "reopen", RESIDENT, {"reason_code": "bored"}).code == "reason_code_unknown"
        assert refused(case, "reopen", LIGHTING, {"reason_code": "other"}).code == "actor_not_allowed"
        step = apply(case, "reopen", RESIDENT, T0, {"reason_code": "recurring_problem", "reason": "又坏了"})
        assert (step.fact, step.case.state, step.case.owner) == ("case.reopened", "accepted", COMMUNITY)
        assert step.case.times_reopened == 1 and step.fact_data["reason_code"] == "recurring_problem"
        assert "又坏了" not in repr(step.fact_data)


def test_satisfaction_is_one_of_three_answers_and_an_unsatisfied_one_has_a_cause():
    resolved = apply(acknowledged(), "resolve", LIGHTING, T0, {"reply": "已修复"}).case
    assert refused(resolved, "call_back", SYSTEM, {"satisfaction": "meh"}).code == "satisfaction_unknown"
    assert refused(resolved, "call_back", SYSTEM, {"satisfaction": "unsatisfied"}).code == "cause_invalid"
    assert refused(resolved, "call_back", SYSTEM, {"satisfaction": "unsatisfied", "cause": "x"}).code == (
        "cause_invalid")
    assert refused(resolved, "call_back", SYSTEM, {"satisfaction": "satisfied", "cause": "other"}).code == (
        "cause_invalid")
    step = apply(resolved, "call_back", SYSTEM, T0, {"satisfaction": "unsatisfied", "cause": "recurring_problem"})
    assert step.fact_data["cause"] == "recurring_problem" and step.case.satisfaction == "unsatisfied"


def test_a_merged_child_follows_its_parent():
    child = dispatched()
    assert refused(child, "merge", COMMITTEE, {"parent_id": "case-1", "parent_state": "accepted"}).code == (
        "parent_invalid")
    assert refused(child, "merge", COMMITTEE, {"parent_id": "case-2", "parent_state": "closed"}).code == (
        "parent_not_open")
    step = apply(child, "merge", COMMITTEE, T0, {"parent_id": "case-2", "parent_state": "acknowledged"})
    assert (step.fact, step.case.state, step.case.parent_id) == ("case.merged", "merged", "case-2")
    assert not step.case.running_clocks and {change.change for change in step.clocks} == {"stop"}
    assert refused(step.case, "acknowledge", LIGHTING).code == "illegal_transition"
    assert apply(step.case, "close", SYSTEM, T0).case.state == "closed"  # when the parent closes


# --- random sequences: every accepted step is in the table and satisfies its guard; every refused one is an
# IllegalTransition, never another exception.
PARTIES = ["city-lighting", "urban-management", "sanitation", COMMUNITY, "Bad Id"]
ACTORS = st.one_of(st.sampled_from([COMMITTEE, RESIDENT, SYSTEM, Actor("resident"), Actor("department")]),
                   st.builds(Actor, st.just("department"), st.sampled_from(PARTIES)))
TIMES = st.builds(lambda hours: T0 + timedelta(hours=hours), st.integers(-48, 24 * 20))
VALUES = {
    "lead": st.sampled_from(PARTIES), "co_handlers": st.lists(st.sampled_from(PARTIES), max_size=3),
    "reason_code": st.sampled_from([*lifecycle.REJECT_REASONS, *lifecycle.DISSATISFACTION_CAUSES, "x"]),
    "suggested_owner": st.sampled_from([None, *PARTIES]), "until": TIMES,
    "reply": st.sampled_from(["", " ", "已修复", None]), "satisfaction": st.sampled_from([*lifecycle.SATISFACTION, ""]),
    "reason": st.sampled_from(["", "又坏了", 3]), "cause": st.sampled_from([None, "other", "x"]),
    "parent_id": st.sampled_from(["case-1", "case-2", ""]),
    "parent_state": st.sampled_from(lifecycle.STATES), "colour": st.just("red"),
}
LIKELY = {"lead": st.sampled_from(PARTIES[:4]), "co_handlers": st.just([]), "reply": st.just("已修复"),
          "suggested_owner": st.sampled_from([None, "sanitation"]),
          "satisfaction": st.sampled_from(lifecycle.SATISFACTION),
          "reason_code": st.sampled_from([*lifecycle.REJECT_REASONS, *lifecycle.DISSATISFACTION_CAUSES]),
          "parent_id": st.just("case-2"), "parent_state": st.sampled_from(lifecycle.OPEN_STATES)}
ARGUMENTS = st.dictionaries(st.sampled_from(sorted(VALUES)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({key: VALUES[key] for key in keys}))


def _guard_holds(before, step, action, arguments, at):
    """What each accepted step must satisfy, restated independently of the machine's guards."""
    if action == "dispatch":
        assert lifecycle.PARTY_ID.match(arguments["lead"]) and arguments["lead"] not in arguments.get(
            "co_handlers", [])
    if action == "reject":
        assert before.lead != COMMUNITY and arguments["reason_code"] in lifecycle.REJECT_REASONS
    if action == "request_extension":
        assert before.extension_requested_until is None
        assert before.resolve_due_at is not None and at < before.resolve_due_at < arguments["until"]
    if action in ("grant_extension", "refuse_extension"):
        assert before.extension_requested_until is not None
    if action == "resolve":
        assert arguments["reply"].strip()
    if action == "call_back":
        assert (arguments.get("cause") in lifecycle.DISSATISFACTION_CAUSES) == (
            arguments["satisfaction"] == "unsatisfied")
    if action == "reopen":
        assert arguments["reason_code"] in lifecycle.DISSATISFACTION_CAUSES
    if action == "merge":
        assert arguments["parent_id"] not in ("", before.case_id) and arguments["parent_state"] in (
            lifecycle.OPEN_STATES)


class RandomLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.case = Case("case-1")

    @rule(action=st.sampled_from([*lifecycle.TABLE, "teleport"]), actor=ACTORS, arguments=ARGUMENTS, at=TIMES)
    def act_at_random(self, action, actor, arguments, at):
        self._act(action, actor, arguments, at)

    @rule(data=st.data(), at=TIMES)
    def act_as_someone_on_the_case(self, data, at):
        """Random sequences seldom get far; this rule picks an action the state allows, mostly someone the
        action is for, and the action's arguments, mostly valid, so that the deep states are reached too."""
        allowed = lifecycle.allowed_actions(self.case)
        onward = [action for action in allowed if action != "merge"]  # merging ends the walk down the table
        action = data.draw(st.sampled_from(onward * 3 + allowed))
        parties = [party for party in (self.case.lead, *self.case.co_handlers) if party and party != COMMUNITY]
        everyone = [COMMITTEE, RESIDENT, SYSTEM, *(Actor("department", party) for party in parties)]
        entitled = [actor for actor in everyone
                    if lifecycle.TABLE[action].roles & lifecycle.roles_of(self.case, actor)] or everyone
        actor = data.draw(st.sampled_from(entitled * 3 + everyone))
        required, optional = lifecycle.ARGUMENTS.get(action, (frozenset(), frozenset()))
        keys = [*sorted(required), *data.draw(st.lists(st.sampled_from(sorted(optional) or [""]), max_size=1))]
        arguments = {key: data.draw(LIKELY.get(key, VALUES[key]) | VALUES[key]) for key in keys if key}
        if action == "request_extension" and self.case.resolve_due_at and data.draw(st.booleans()):
            at, arguments["until"] = self.case.resolve_due_at - timedelta(hours=1), self.case.resolve_due_at + (
                timedelta(days=2))
        self._act(action, actor, arguments, at)

    def _act(self, action, actor, arguments, at):
        before = self.case
        try:
            step = apply(before, action, actor, at, arguments)
        except IllegalTransition as error:
            assert error.code and error.details["state"] == before.state and error.details["action"] == action
            assert error.details["allowed_actions"] == lifecycle.allowed_actions(before)
            return
        transition = lifecycle.TABLE[action]
        assert before.state in transition.sources
        assert transition.roles & lifecycle.roles_of(before, actor)
        assert step.fact == transition.fact and step.case.state == (transition.target or before.state)
        assert before.state != "closed" or action == "reopen"  # closed is terminal except reopen
        assert before.state != "merged" or action == "close"  # a merged child only follows its parent
        _guard_holds(before, step, action, arguments, at)
        self.case = step.case
        if ClockChange("start", "resolve") in step.clocks:  # as the service does, from the catalogue's SLA
            self.case = replace(self.case, resolve_due_at=at + timedelta(days=3))

    @rule(hours=st.integers(1, 24 * 10))
    def service_sets_the_resolve_deadline(self, hours):
        if "resolve" in self.case.running_clocks | self.case.paused_clocks:
            self.case = replace(self.case, resolve_due_at=T0 + timedelta(hours=hours))

    @invariant()
    def owner_and_clocks_agree_with_the_state(self):
        case = self.case
        assert case.state in lifecycle.STATES
        assert case.owner == (case.lead if case.state in lifecycle.DEPARTMENT_STATES else COMMUNITY)
        assert not case.running_clocks & case.paused_clocks
        assert bool(case.paused_clocks) <= (case.state == "waiting_for_resident")
        assert not (case.state == "waiting_for_resident" and case.running_clocks)
        if case.state in ("submitted", "accepted", "called_back", "closed", "merged"):
            assert not case.running_clocks | case.paused_clocks


RandomLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
test_random_sequences_accept_only_what_the_table_and_guards_allow = RandomLifecycle.TestCase
