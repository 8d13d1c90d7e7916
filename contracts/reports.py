"""Messages the reports service publishes: the committee's monthly assessment of each community."""
from marshmallow import Schema, fields, validate

from contracts.registry import registry


class CriterionScore(Schema):
    name = fields.String(required=True)
    value = fields.Float(required=True, allow_none=True)
    target = fields.Float(required=True)
    weight = fields.Float(required=True)
    points = fields.Float(required=True)


class CommunityAssessedV1(Schema):
    community_id = fields.String(required=True, validate=validate.Length(min=1))
    month = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$"))
    score = fields.Float(required=True, validate=validate.Range(min=0, max=100))
    rank = fields.Integer(required=True, validate=validate.Range(min=1))
    communities_ranked = fields.Integer(required=True, validate=validate.Range(min=1))
    criteria = fields.List(fields.Nested(CriterionScore), required=True)
    demonstration = fields.Boolean(required=True)


COMMUNITY_ASSESSED = registry.define(
    "community.assessed", 1, CommunityAssessedV1,
    "A community's demonstration-community (示范社区) score for a month, each criterion's value, and its rank.",
    {"community_id": "tongzilin", "month": "2026-11", "score": 86.5, "rank": 1, "communities_ranked": 12,
     "criteria": [{"name": "events_per_month", "value": 9, "target": 8, "weight": 25, "points": 25},
                  {"name": "satisfaction_9_plus", "value": 0.62, "target": 0.8, "weight": 25, "points": 19.4}],
     "demonstration": True},
    producer="reports",
)
