"""The demonstration-community scorecard: criteria and weights from a config file, a score per
community per month with each criterion's value, and the ranking. Pure Python."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_CONFIG = Path(__file__).parent / "scorecard.yaml"


@dataclass(frozen=True)
class Criterion:
    name: str
    target: float
    weight: float


@dataclass(frozen=True)
class Scorecard:
    criteria: tuple[Criterion, ...]
    demonstration_threshold: float


MEASURES = {
    "events_per_month": lambda month, profile: month["events_held"],
    "participation_rate": lambda month, profile: (
        month["attendance"] / profile["residents_total"] if profile["residents_total"] else None),
    "satisfaction_9_plus": lambda month, profile: month["satisfaction_9_plus_share"],
    "average_satisfaction": lambda month, profile: month["average_satisfaction"],
    "own_language_reach": lambda month, profile: month["notified_in_own_language_share"],
    "attendance_rate": lambda month, profile: month["attendance_rate"],
}


class ScorecardError(ValueError):
    pass


def load(path: Path | str | None = None) -> Scorecard:
    raw = yaml.safe_load(Path(path or DEFAULT_CONFIG).read_text(encoding="utf-8"))
    criteria = []
    for item in raw.get("criteria") or []:
        if item.get("name") not in MEASURES:
            raise ScorecardError(f"unknown criterion {item.get('name')!r}; known: {sorted(MEASURES)}")
        if float(item["target"]) <= 0 or float(item["weight"]) < 0:
            raise ScorecardError(f"criterion {item['name']}: target must be > 0 and weight >= 0")
        criteria.append(Criterion(item["name"], float(item["target"]), float(item["weight"])))
    if not criteria:
        raise ScorecardError("the scorecard has no criteria")
    return Scorecard(tuple(criteria), float(raw.get("demonstration_threshold", 80)))


def score(card: Scorecard, month: dict, profile: dict) -> dict:
    """One community's score for a month (0-100) with every criterion's value and points."""
    total_weight = sum(c.weight for c in card.criteria) or 1.0
    rows, points_total = [], 0.0
    for criterion in card.criteria:
        value = MEASURES[criterion.name](month, profile)
        points = 0.0 if value is None else criterion.weight * min(1.0, value / criterion.target)
        points_total += points
        rows.append({"name": criterion.name, "value": None if value is None else round(value, 4),
                     "target": criterion.target, "weight": criterion.weight, "points": round(points, 2)})
    total = round(100 * points_total / total_weight, 2)
    return {"score": total, "criteria": rows, "demonstration": total >= card.demonstration_threshold}


def rank(scores: dict[str, dict]) -> list[dict]:
    """Communities best first (ties by community id); equal scores share a rank."""
    ordered = sorted(scores.items(), key=lambda item: (-item[1]["score"], item[0]))
    ranked, previous, position = [], None, 0
    for index, (community, result) in enumerate(ordered, start=1):
        if result["score"] != previous:
            position, previous = index, result["score"]
        ranked.append({"community_id": community, "rank": position, **result})
    return ranked
