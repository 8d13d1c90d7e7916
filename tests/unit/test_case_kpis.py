"""The cases' monthly figures from counters: a known month of 20 cases worked out by hand, zero denominators,
city-wide sums, departments side by side, and the printed formulas."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.cases import kpis
from services.cases.kpis import CAUSES, CaseCounters, combine, figures

ANSWERS = (None, "satisfied", "basically_satisfied", "unsatisfied")


def case(returned=False, ack=True, responded=True, resolved=True, on_time=True, days=3.0, reopened=False,
         answer=None, cause=None, closed=False, overdue=False) -> dict:
    return dict(returned=returned, ack=ack, responded=responded, resolved=resolved, on_time=on_time, days=days,
                reopened=reopened, answer=answer, cause=cause, closed=closed, overdue=overdue)


def tally(cases: list[dict]) -> CaseCounters:
    """What the projection's increments add up to for these cases (each row: the case's state at report time)."""
    kept = [c for c in cases if not c["returned"]]
    resolved = [c for c in kept if c["resolved"]]
    causes = {cause: sum(1 for c in kept if c["answer"] == "unsatisfied" and c["cause"] == cause) for cause in CAUSES}
    return CaseCounters(
        received=len(cases), returned=len(cases) - len(kept),
        acknowledged_on_time=sum(c["ack"] for c in kept), responded_on_time=sum(c["responded"] for c in kept),
        resolved=len(resolved), resolved_on_time=sum(c["on_time"] for c in resolved),
        working_days_to_resolve=sum(c["days"] for c in resolved), reopened=sum(c["reopened"] for c in kept),
        satisfied=sum(c["answer"] == "satisfied" for c in kept),
        basically_satisfied=sum(c["answer"] == "basically_satisfied" for c in kept),
        unsatisfied=sum(c["answer"] == "unsatisfied" for c in kept), unsatisfied_by_cause=causes,
        open=sum(not c["closed"] for c in kept), overdue=sum(c["overdue"] for c in kept))


# The street-lighting department, March 2026: 20 cases dispatched to it.
MARCH = [
    # c01, c02: rejected and returned to the committee; they do not count as owned.
    case(returned=True, ack=False, responded=False, resolved=False),
    case(returned=True, ack=False, responded=False, resolved=False),
    # c03..c10: resolved in 3 working days, on time, satisfied, closed; but c04 and c05 were acknowledged
    # late and contacted late, and c06 was contacted late.
    case(answer="satisfied", closed=True),
    case(ack=False, responded=False, answer="satisfied", closed=True),
    case(ack=False, responded=False, answer="satisfied", closed=True),
    case(responded=False, answer="satisfied", closed=True),
    *[case(answer="satisfied", closed=True) for _ in range(4)],
    # c11, c12: the same, basically satisfied, closed.
    *[case(answer="basically_satisfied", closed=True) for _ in range(2)],
    # c13: unsatisfied (current policy), reopened, open again.
    case(answer="unsatisfied", cause="current_policy", reopened=True),
    # c14: reopened, resolved again, then satisfied (the latest answer counts), closed.
    case(answer="satisfied", reopened=True, closed=True),
    # c15: resolved late after 6.5 working days, unsatisfied (overlapping jurisdiction), reopened.
    case(on_time=False, days=6.5, answer="unsatisfied", cause="overlapping_jurisdiction", reopened=True),
    # c16: resolved late after 8 working days, basically satisfied, closed.
    case(on_time=False, days=8.0, answer="basically_satisfied", closed=True),
    # c17: resolved late after 10 working days, call-back not answered yet.
    case(on_time=False, days=10.0),
    # c18, c19: acknowledged, contacted, not resolved, past the resolve deadline.
    case(resolved=False, overdue=True), case(resolved=False, overdue=True),
    # c20: acknowledged, contacted, not resolved, still within its limit.
    case(resolved=False),
]


def test_the_counters_of_the_known_month_counted_by_hand():
    assert len(MARCH) == 20
    assert tally(MARCH) == CaseCounters(
        received=20, returned=2,
        acknowledged_on_time=16,  # 18 owned, c04 and c05 late
        responded_on_time=15,  # c04, c05, c06 late
        resolved=15,  # c03..c17
        resolved_on_time=12,  # c15, c16, c17 late
        working_days_to_resolve=60.5,  # 12 × 3 + 6.5 + 8 + 10
        reopened=3,  # c13, c14, c15
        satisfied=9,  # c03..c10 and c14
        basically_satisfied=3,  # c11, c12, c16
        unsatisfied=2,  # c13, c15
        unsatisfied_by_cause={"current_policy": 1, "overlapping_jurisdiction": 1},
        open=6,  # c13, c15, c17, c18, c19, c20
        overdue=2)  # c18, c19


def test_the_figures_of_the_known_month_worked_out_by_hand():
    assert figures(tally(MARCH)) == {
        "received": 20,
        "owned": 18,  # 20 − 2 returned
        "response_rate": 0.8333,  # 15 / 18
        "resolution_rate": 0.7222,  # (15 resolved − 2 unsatisfied) / 18 = 13 / 18
        "satisfaction_rate": 0.8571,  # (9 + 3) / (9 + 3 + 2) = 12 / 14; c17 has not answered
        "on_time_acknowledgement_rate": 0.8889,  # 16 / 18
        "on_time_resolution_rate": 0.8,  # 12 / 15
        "average_working_days_to_resolve": 4.03,  # 60.5 / 15 = 4.0333…
        "open": 6, "overdue": 2, "reopened": 3,
        "unsatisfied_by_cause": {"current_policy": 1, "recurring_problem": 0, "long_legal_procedure": 0,
                                 "overlapping_jurisdiction": 1, "other": 0}}


def test_a_month_with_nothing_has_no_rates_not_zero_rates():
    result = figures(CaseCounters())
    assert result["received"] == result["owned"] == result["open"] == 0
    for name in ("response_rate", "resolution_rate", "satisfaction_rate", "on_time_acknowledgement_rate",
                 "on_time_resolution_rate", "average_working_days_to_resolve"):
        assert result[name] is None, name


def test_each_rate_is_none_only_when_its_own_denominator_is_zero():
    only_returned = figures(CaseCounters(received=2, returned=2))
    assert (only_returned["owned"], only_returned["response_rate"], only_returned["resolution_rate"]) == (0, None, None)
    nothing_resolved_nobody_answered = figures(CaseCounters(received=4, acknowledged_on_time=4, responded_on_time=1,
                                                            open=4))
    assert nothing_resolved_nobody_answered["response_rate"] == 0.25
    assert nothing_resolved_nobody_answered["resolution_rate"] == 0.0
    assert nothing_resolved_nobody_answered["on_time_acknowledgement_rate"] == 1.0
    assert nothing_resolved_nobody_answered["on_time_resolution_rate"] is None
    assert nothing_resolved_nobody_answered["average_working_days_to_resolve"] is None
    assert nothing_resolved_nobody_answered["satisfaction_rate"] is None


def test_city_wide_figures_are_computed_on_summed_counters_not_averaged_rates():
    parks = CaseCounters(received=2, resolved=2, working_days_to_resolve=2.0, satisfied=1, unsatisfied=1,
                         unsatisfied_by_cause={"other": 1}, responded_on_time=2)
    city = combine(tally(MARCH), parks)
    assert (city.received, city.resolved, city.working_days_to_resolve) == (22, 17, 62.5)
    assert city.unsatisfied_by_cause["other"] == 1 and city.unsatisfied_by_cause["current_policy"] == 1
    result = figures(city)
    assert result["satisfaction_rate"] == round(13 / 16, 4)  # not the mean of 0.8571 and 0.5
    assert result["average_working_days_to_resolve"] == round(62.5 / 17, 2)
    assert result["response_rate"] == round(17 / 20, 4)


def test_counters_read_from_a_projection_document():
    document = {"_id": "roads|2026-03", "scope": "roads", "month": "2026-03", "received": 3, "resolved": 1,
                "working_days_to_resolve": 2.5, "unsatisfied": 1, "unsatisfied_by_cause": {"recurring_problem": 1}}
    counters = CaseCounters.from_document(document)
    assert (counters.received, counters.resolved, counters.returned) == (3, 1, 0)
    assert counters.unsatisfied_by_cause == {"current_policy": 0, "recurring_problem": 1, "long_legal_procedure": 0,
                                             "overlapping_jurisdiction": 0, "other": 0}


def test_an_unknown_cause_is_refused_by_name():
    with pytest.raises(ValueError, match="bad_weather"):
        CaseCounters(unsatisfied_by_cause={"bad_weather": 1})


def test_departments_side_by_side_best_first():
    by_department = {
        "parks": {"satisfaction_rate": 0.9, "resolution_rate": 0.8, "response_rate": 1.0,
                  "average_working_days_to_resolve": 3.0},
        "roads": {"satisfaction_rate": 0.9, "resolution_rate": 0.85, "response_rate": 0.5,
                  "average_working_days_to_resolve": 5.0},
        "water": {"satisfaction_rate": None, "resolution_rate": 1.0, "response_rate": 1.0,
                  "average_working_days_to_resolve": 1.0},
        "lights": {"satisfaction_rate": 0.95, "resolution_rate": None, "response_rate": None,
                   "average_working_days_to_resolve": None},
        "police": {"satisfaction_rate": 0.9, "resolution_rate": 0.8, "response_rate": 1.0,
                   "average_working_days_to_resolve": 2.0},
        "housing": {"satisfaction_rate": 0.9, "resolution_rate": 0.8, "response_rate": 1.0,
                    "average_working_days_to_resolve": 2.0},
    }
    ordered = [name for name, _ in sorted(by_department.items(), key=lambda item: kpis.ranking_key(*item))]
    # lights: best 满意率; roads: better 解决率; housing/police: fewer days than parks, tie broken by id;
    # water: no 满意率 at all, last.
    assert ordered == ["lights", "roads", "housing", "police", "parks", "water"]


def test_every_figure_has_its_formula_in_both_languages():
    assert set(kpis.FORMULAS) == set(figures(CaseCounters()))
    for name, text in kpis.FORMULAS.items():
        assert set(text) == {"zh-CN", "en"} and all(text.values()), name
    assert set(kpis.CAUSE_NAMES) == set(CAUSES)


cases_strategy = st.lists(st.builds(
    lambda returned, ack, responded, resolved, on_time, halves, answer, cause_index, closed, overdue: case(
        returned=returned, ack=ack and not returned, responded=responded and not returned,
        resolved=resolved and not returned, on_time=on_time, days=halves / 2,
        answer=answer if resolved and not returned else None,
        reopened=answer == "unsatisfied" and resolved and not returned,
        cause=CAUSES[cause_index], closed=closed and answer != "unsatisfied", overdue=overdue and not closed),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 60),
    st.sampled_from(ANSWERS), st.integers(0, len(CAUSES) - 1), st.booleans(), st.booleans()), max_size=40)

RATES = ("response_rate", "resolution_rate", "satisfaction_rate", "on_time_acknowledgement_rate",
         "on_time_resolution_rate")


@given(cases_strategy)
def test_rates_of_any_history_are_within_0_and_1_or_none(cases):
    result = figures(tally(cases))
    for name in RATES:
        assert result[name] is None or 0 <= result[name] <= 1, (name, result[name])
    days = result["average_working_days_to_resolve"]
    assert days is None or days >= 0
    assert sum(result["unsatisfied_by_cause"].values()) <= result["owned"]


WHOLE_COUNTERS = [name for name in kpis.COUNTER_NAMES
                  if name not in ("working_days_to_resolve", "unsatisfied_by_cause")]
counters_strategy = st.builds(
    lambda numbers, halves, causes: CaseCounters(
        **dict(zip(WHOLE_COUNTERS, numbers)), working_days_to_resolve=halves / 2,
        unsatisfied_by_cause=dict(zip(CAUSES, causes))),
    st.lists(st.integers(0, 10_000), min_size=len(WHOLE_COUNTERS), max_size=len(WHOLE_COUNTERS)),
    st.integers(0, 100_000),
    st.lists(st.integers(0, 100), min_size=len(CAUSES), max_size=len(CAUSES)))


@given(counters_strategy, counters_strategy, counters_strategy)
def test_combine_is_associative_and_commutative_with_nothing_as_identity(a, b, c):
    assert combine(combine(a, b), c) == combine(a, combine(b, c))
    assert combine(a, b) == combine(b, a)
    assert combine(a, CaseCounters()) == a
