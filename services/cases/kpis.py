"""The monthly case figures (接诉即办 / 12345 style) of one department or one community, from counters alone.

Whose month a case counts in. A case counts in the month its scope received it (a department: the month it
was dispatched to it as lead department; a community: the month the case was accepted in it), and every later
fact about the case increments that same month's counters. So a month's figures are about the cases received in
that month (the cohort the assessments rank), every rate's numerator is a subset of its denominator, and the
figures of a month keep filling in while its cases are handled.

Counters. Each is kept by a projection with ``$inc`` on a ``(scope, month)`` document; no figure needs a scan of
the cases. "Once per case" means the fact is counted the first time only (the case's facts say so).

==========================  ===========================================================================
``received``                +1 when the scope receives the case.
``returned``                +1 when the department rejects the case and it goes back to the committee
                            (first-receiver responsibility: always 0 for a community).
``acknowledged_on_time``    +1 once per case, acknowledged within the acknowledge limit.
``responded_on_time``       +1 once per case, first contact with the resident (for a case without a
                            contact, the first written reply) within the first-contact limit.
``resolved``                +1 at the case's first resolution (办结, with a reply).
``resolved_on_time``        +1 if that first resolution was within the resolve limit (as extended).
``working_days_to_resolve`` + the working days from receipt to that first resolution, paused time left
                            out (computed by the working-day calendar; here a number).
``reopened``                +1 once per case, reopened by an unsatisfied resident.
``satisfied``,              +1 for the resident's answer at call-back (回访). The latest answer counts: a
``basically_satisfied``,    later answer moves the case (-1 on the old counter, +1 on the new one).
``unsatisfied``
``unsatisfied_by_cause.X``  moves with ``unsatisfied``: the cause X of the latest unsatisfied answer, one of
                            ``CAUSES``. The causes add up to ``unsatisfied``.
``open``                    gauge: +1 when received, -1 when closed or returned.
``overdue``                 gauge: +1 when an open case first misses a deadline of its current stage, -1
                            when that stage is done, or the case is returned or closed; a case counts once.
==========================  ===========================================================================

Figures (``FORMULAS`` holds the printed wording; a rate whose denominator is 0 is None, never 0):

- ``owned`` = received - returned: the cases the scope answers for; the denominator of the stage rates.
- 响应率 ``response_rate`` = responded_on_time / owned.
- 解决率 ``resolution_rate`` = (resolved - unsatisfied) / owned: a case counts as solved when it was resolved
  and the resident did not, at the latest call-back, say unsatisfied (the resident judges, as at 12345's
  call-back); a case resolved again after a reopening and then rated satisfied counts again.
- 满意率 ``satisfaction_rate`` = (satisfied + basically_satisfied) / (satisfied + basically_satisfied +
  unsatisfied): over the residents who answered the call-back, not over all cases.
- ``on_time_acknowledgement_rate`` = acknowledged_on_time / owned.
- ``on_time_resolution_rate`` = resolved_on_time / resolved: over the cases resolved; lateness of cases not
  yet resolved shows in ``overdue``.
- ``average_working_days_to_resolve`` = working_days_to_resolve / resolved (the "working days to reply").
- ``open``, ``overdue``, ``reopened``, ``unsatisfied_by_cause``: the counters as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping

CAUSES: tuple[str, ...] = (
    "current_policy", "recurring_problem", "long_legal_procedure", "overlapping_jurisdiction", "other")

CAUSE_NAMES: dict[str, dict[str, str]] = {
    "current_policy": {"zh-CN": "现行政策限制", "en": "current policy"},
    "recurring_problem": {"zh-CN": "问题反复出现", "en": "recurring problem"},
    "long_legal_procedure": {"zh-CN": "法定程序周期长", "en": "long legal procedure"},
    "overlapping_jurisdiction": {"zh-CN": "职责交叉", "en": "overlapping jurisdiction"},
    "other": {"zh-CN": "其他", "en": "other"},
}

FORMULAS: dict[str, dict[str, str]] = {
    "received": {
        "zh-CN": "受理量 = 本月派至（或在本社区受理）的诉求数",
        "en": "received = cases dispatched to the department (or accepted in the community) this month"},
    "owned": {
        "zh-CN": "应办量 = 受理量 − 退回委员会的诉求数",
        "en": "owned = received − cases returned to the committee"},
    "response_rate": {
        "zh-CN": "响应率 = 在首次联系时限内联系诉求人的诉求数 ÷ 应办量；应办量为 0 时不计",
        "en": "response rate = cases whose resident was contacted within the first-contact limit ÷ owned; "
              "none when owned is 0"},
    "resolution_rate": {
        "zh-CN": "解决率 = （已办结数 − 最近一次回访不满意数）÷ 应办量；应办量为 0 时不计",
        "en": "resolution rate = (cases resolved − cases whose latest call-back answer is unsatisfied) ÷ owned; "
              "none when owned is 0"},
    "satisfaction_rate": {
        "zh-CN": "满意率 = （满意数 + 基本满意数）÷ 回访中作出评价的诉求数；无人评价时不计",
        "en": "satisfaction rate = (satisfied + basically satisfied) ÷ cases whose resident answered the "
              "call-back; none when nobody answered"},
    "on_time_acknowledgement_rate": {
        "zh-CN": "按时签收率 = 在签收时限内签收的诉求数 ÷ 应办量；应办量为 0 时不计",
        "en": "on-time acknowledgement = cases acknowledged within the acknowledge limit ÷ owned; "
              "none when owned is 0"},
    "on_time_resolution_rate": {
        "zh-CN": "按时办结率 = 在办结时限（含批准的延期）内首次办结的诉求数 ÷ 已办结数；无办结时不计",
        "en": "on-time resolution = cases first resolved within the resolve limit (as extended) ÷ cases "
              "resolved; none when none was resolved"},
    "average_working_days_to_resolve": {
        "zh-CN": "平均办理工作日 = 自受理至首次办结的工作日之和（不含暂停时间）÷ 已办结数；无办结时不计",
        "en": "average working days to resolve = sum of working days from receipt to first resolution "
              "(paused time left out) ÷ cases resolved; none when none was resolved"},
    "open": {
        "zh-CN": "未结量 = 尚未结案且未退回的诉求数",
        "en": "open = cases not yet closed nor returned"},
    "overdue": {
        "zh-CN": "超期量 = 未结诉求中当前环节已超过时限的诉求数",
        "en": "overdue = open cases past the deadline of their current stage"},
    "reopened": {
        "zh-CN": "重启量 = 因诉求人不满意而重新办理的诉求数",
        "en": "reopened = cases reopened by an unsatisfied resident"},
    "unsatisfied_by_cause": {
        "zh-CN": "不满意原因分布 = 最近一次回访不满意的诉求按原因计数",
        "en": "dissatisfaction by cause = cases whose latest call-back answer is unsatisfied, counted by cause"},
}


@dataclass(frozen=True)
class CaseCounters:
    """The counters of one scope (department or community) and month; see the module docstring."""

    received: int = 0
    returned: int = 0
    acknowledged_on_time: int = 0
    responded_on_time: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    working_days_to_resolve: float = 0
    reopened: int = 0
    satisfied: int = 0
    basically_satisfied: int = 0
    unsatisfied: int = 0
    unsatisfied_by_cause: Mapping[str, int] = field(default_factory=dict)
    open: int = 0
    overdue: int = 0

    def __post_init__(self):
        unknown = set(self.unsatisfied_by_cause) - set(CAUSES)
        if unknown:
            raise ValueError(f"unsatisfied_by_cause: unknown causes {sorted(unknown)}; known: {list(CAUSES)}")
        object.__setattr__(self, "unsatisfied_by_cause",
                           {cause: self.unsatisfied_by_cause.get(cause, 0) for cause in CAUSES})

    @classmethod
    def from_document(cls, document: Mapping) -> CaseCounters:
        """The counters of a projection document; a counter never incremented is 0, other keys are ignored."""
        names = {counter.name for counter in fields(cls)}
        return cls(**{name: value for name, value in document.items() if name in names})


COUNTER_NAMES: tuple[str, ...] = tuple(counter.name for counter in fields(CaseCounters))


def combine(a: CaseCounters, b: CaseCounters) -> CaseCounters:
    """The counters of two scopes or months together (city-wide sums); figures are then computed on the sum."""
    summed = {name: getattr(a, name) + getattr(b, name) for name in COUNTER_NAMES if name != "unsatisfied_by_cause"}
    causes = {cause: a.unsatisfied_by_cause[cause] + b.unsatisfied_by_cause[cause] for cause in CAUSES}
    return CaseCounters(**summed, unsatisfied_by_cause=causes)


def _ratio(numerator: float, denominator: float, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def figures(counters: CaseCounters) -> dict:
    """The figures of ``FORMULAS`` from one scope-month's counters: rates to 4 places, days to 2, None for 0/0."""
    c = counters
    owned = c.received - c.returned
    answered = c.satisfied + c.basically_satisfied + c.unsatisfied
    return {
        "received": c.received,
        "owned": owned,
        "response_rate": _ratio(c.responded_on_time, owned),
        "resolution_rate": _ratio(c.resolved - c.unsatisfied, owned),
        "satisfaction_rate": _ratio(c.satisfied + c.basically_satisfied, answered),
        "on_time_acknowledgement_rate": _ratio(c.acknowledged_on_time, owned),
        "on_time_resolution_rate": _ratio(c.resolved_on_time, c.resolved),
        "average_working_days_to_resolve": _ratio(c.working_days_to_resolve, c.resolved, 2),
        "open": c.open,
        "overdue": c.overdue,
        "reopened": c.reopened,
        "unsatisfied_by_cause": dict(c.unsatisfied_by_cause),
    }


def _descending(rate: float | None) -> tuple[bool, float]:
    return (rate is None, -(rate or 0.0))


def ranking_key(scope_id: str, figures_of_scope: Mapping) -> tuple:
    """Sort key for departments side by side, best first: by 满意率, then 解决率, then 响应率 (higher is better),
    then fewer average working days to resolve; a missing figure ranks after every present one; the scope id
    breaks the remaining ties so the order is stable. Use: ``sorted(items, key=lambda kv: ranking_key(*kv))``."""
    days = figures_of_scope["average_working_days_to_resolve"]
    return (*_descending(figures_of_scope["satisfaction_rate"]), *_descending(figures_of_scope["resolution_rate"]),
            *_descending(figures_of_scope["response_rate"]), days is None, days or 0.0, scope_id)
