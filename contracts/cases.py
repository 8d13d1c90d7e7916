"""Messages the cases service publishes: a resident's case (诉求) through its lifecycle.

Ids, community, type code, codes and times only: a case's description, the department's reply and a
resident's reason stay in the cases service (free text may hold anything), and no personal field is
carried (the resident is named by id only, and only on ``case.submitted``).
"""
from marshmallow import Schema, fields, validate

from contracts.registry import registry

PARTY = validate.Regexp(r"^[a-z0-9][a-z0-9-]{1,47}$")  # a partner id, or "community" (the committee itself)
CODE = validate.Regexp(r"^[a-z][a-z0-9_]{1,47}$")
INTAKE_CHANNELS = ("api",)
REJECT_REASONS = ("outside_jurisdiction", "outside_area", "duplicate", "legal_procedure_required",
                  "insufficient_information")
DISSATISFACTION_CAUSES = ("current_policy", "recurring_problem", "long_legal_procedure",
                          "overlapping_jurisdiction", "other")
SATISFACTION = ("satisfied", "basically_satisfied", "unsatisfied")


class _CaseFacts(Schema):
    case_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    type_code = fields.String(required=True, validate=CODE)
    state = fields.String(required=True, validate=validate.Length(min=1, max=48))
    owner = fields.String(required=True, validate=PARTY)  # who must act next


class CaseSubmittedV1(_CaseFacts):
    submitted_at = fields.DateTime(required=True, format="iso")
    channel = fields.String(required=True, validate=validate.OneOf(INTAKE_CHANNELS))
    language = fields.String(required=True, validate=validate.Length(min=2, max=16))
    grid_id = fields.String(allow_none=True, load_default=None)
    resident_id = fields.String(allow_none=True, load_default=None)  # None: anonymous
    likely_duplicates = fields.List(fields.String(), load_default=list)


class CaseAcceptedV1(_CaseFacts):
    accepted_at = fields.DateTime(required=True, format="iso")


class CaseDispatchedV1(_CaseFacts):
    dispatched_at = fields.DateTime(required=True, format="iso")
    lead = fields.String(required=True, validate=PARTY)
    co_handlers = fields.List(fields.String(validate=PARTY), load_default=list)
    resolve_due_at = fields.DateTime(allow_none=True, load_default=None, format="iso")


class CaseAcknowledgedV1(_CaseFacts):
    acknowledged_at = fields.DateTime(required=True, format="iso")
    by = fields.String(required=True, validate=PARTY)


class CaseRejectedV1(_CaseFacts):
    rejected_at = fields.DateTime(required=True, format="iso")
    rejected_by = fields.String(required=True, validate=PARTY)
    reason_code = fields.String(required=True, validate=validate.OneOf(REJECT_REASONS))
    suggested_owner = fields.String(allow_none=True, load_default=None, validate=PARTY)


class CaseResolvedV1(_CaseFacts):
    resolved_at = fields.DateTime(required=True, format="iso")
    by = fields.String(required=True, validate=PARTY)


class CaseCalledBackV1(_CaseFacts):
    called_back_at = fields.DateTime(required=True, format="iso")
    satisfaction = fields.String(required=True, validate=validate.OneOf(SATISFACTION))
    cause = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(DISSATISFACTION_CAUSES))


class CaseClosedV1(_CaseFacts):
    closed_at = fields.DateTime(required=True, format="iso")


class CaseReopenedV1(_CaseFacts):
    reopened_at = fields.DateTime(required=True, format="iso")
    cause_code = fields.String(required=True, validate=validate.OneOf(DISSATISFACTION_CAUSES))
    times_reopened = fields.Integer(required=True, validate=validate.Range(min=1))


_CASE = {"case_id": "6b0880aa1c2d3e4f50617301", "community_id": "tongzilin", "type_code": "streetlight"}
_AT = "2026-12-01T09:30:00+08:00"


def _register(name, schema, description, example):
    return registry.define(name, 1, schema, description, example, producer="cases")


CASE_SUBMITTED = _register(
    "case.submitted", CaseSubmittedV1, "A resident's case was taken in (its description stays in cases).",
    {**_CASE, "state": "submitted", "owner": "community", "submitted_at": _AT, "channel": "api", "language": "zh-CN",
     "grid_id": "tongzilin-g03", "resident_id": "6f1c2b0e8a4d4c5e9b7a1d2e", "likely_duplicates": []})
CASE_ACCEPTED = _register("case.accepted", CaseAcceptedV1, "The community committee accepted a case (受理).",
                          {**_CASE, "state": "accepted", "owner": "community", "accepted_at": _AT})
CASE_DISPATCHED = _register(
    "case.dispatched", CaseDispatchedV1, "A case was dispatched (派单) to a lead department, with co-handlers.",
    {**_CASE, "state": "dispatched", "owner": "city-lighting", "dispatched_at": _AT, "lead": "city-lighting",
     "co_handlers": [], "resolve_due_at": "2026-12-08T09:30:00+08:00"})
CASE_ACKNOWLEDGED = _register(
    "case.acknowledged", CaseAcknowledgedV1, "The lead department acknowledged a case dispatched to it.",
    {**_CASE, "state": "acknowledged", "owner": "city-lighting", "acknowledged_at": _AT, "by": "city-lighting"})
CASE_REJECTED = _register(
    "case.rejected", CaseRejectedV1,
    "The lead department returned a case to the committee, with a reason code and a suggested owner.",
    {**_CASE, "state": "accepted", "owner": "community", "rejected_at": _AT, "rejected_by": "city-lighting",
     "reason_code": "outside_jurisdiction", "suggested_owner": "housing-management"})
CASE_RESOLVED = _register(
    "case.resolved", CaseResolvedV1, "A case was resolved (办结); the reply to the resident stays in cases.",
    {**_CASE, "state": "resolved", "owner": "community", "resolved_at": _AT, "by": "city-lighting"})
CASE_CALLED_BACK = _register(
    "case.called_back", CaseCalledBackV1, "The resident was called back (回访) and said how satisfied they are.",
    {**_CASE, "state": "called_back", "owner": "community", "called_back_at": _AT, "satisfaction": "satisfied",
     "cause": None})
CASE_CLOSED = _register("case.closed", CaseClosedV1, "A case was closed.",
                        {**_CASE, "state": "closed", "owner": "community", "closed_at": _AT})
CASE_REOPENED = _register(
    "case.reopened", CaseReopenedV1, "An unsatisfied resident reopened a case, with a cause code.",
    {**_CASE, "state": "accepted", "owner": "community", "reopened_at": _AT, "cause_code": "recurring_problem",
     "times_reopened": 1})
