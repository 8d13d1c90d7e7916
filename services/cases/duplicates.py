"""Likely duplicates at intake: an earlier case of the same type, at the same place, in the days before.

The rule (``DuplicateRule``, defaults from issue #17): a candidate is a likely duplicate of a new case when
- it has the same case type, and
- it was submitted within ``window_days`` calendar days (7 × 24 h by default) before the new case, boundaries
  included, and never after it, and
- it is in the same grid, or both have a location and are at most ``radius_m`` metres apart (50 m by default,
  great-circle distance on the mean Earth radius). A case without a location matches by grid only.

Best first: the nearest first, to the metre (finer than a phone's fix means nothing; cases matched by grid alone,
with no distance to measure, come after every measured one), then the newest, then by case id so the order is
stable.

Which candidates to hand in. The store asks for the cases of the new case's type submitted in the window:
``{"type_code": new.type_code, "submitted_at": {"$gte": new.submitted_at - window, "$lte": new.submitted_at}}``
on the index ``[("type_code", 1), ("submitted_at", -1)]``, so the read is bounded by the cases of one type in
one week, not by all cases. It does not filter by community (two cases 20 m apart may sit on either side of a
boundary), and it may leave out cases merged into a parent (the parent is the one to suggest). This function
checks every rule again, so a wider candidate list is harmless, only slower.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

EARTH_MEAN_RADIUS_M = 6_371_008.8  # IUGG mean radius


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float

    def __post_init__(self):
        if not -90 <= self.latitude <= 90:
            raise ValueError(f"latitude must be within -90..90, got {self.latitude}")
        if not -180 <= self.longitude <= 180:
            raise ValueError(f"longitude must be within -180..180, got {self.longitude}")


@dataclass(frozen=True)
class CaseAtIntake:
    """What the rule needs of a case: ``submitted_at`` is timezone-aware; grid and location may be missing."""

    case_id: str
    type_code: str
    submitted_at: datetime
    grid_id: str | None = None
    location: Location | None = None

    def __post_init__(self):
        if self.submitted_at.tzinfo is None:
            raise ValueError(f"case {self.case_id}: submitted_at must be timezone-aware")


@dataclass(frozen=True)
class DuplicateRule:
    radius_m: float = 50.0
    window_days: int = 7

    def __post_init__(self):
        if self.radius_m < 0 or self.window_days < 0:
            raise ValueError(f"radius_m and window_days must not be negative, got {self.radius_m}, "
                             f"{self.window_days}")


@dataclass(frozen=True)
class LikelyDuplicate:
    case_id: str
    same_grid: bool
    distance_m: float | None  # None when either case has no location
    submitted_at: datetime


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance in metres (haversine)."""
    phi_a, phi_b = math.radians(a.latitude), math.radians(b.latitude)
    d_phi, d_lambda = phi_b - phi_a, math.radians(b.longitude - a.longitude)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi_a) * math.cos(phi_b) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_MEAN_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _match(new: CaseAtIntake, candidate: CaseAtIntake, rule: DuplicateRule) -> LikelyDuplicate | None:
    if candidate.case_id == new.case_id or candidate.type_code != new.type_code:
        return None
    if not timedelta(0) <= new.submitted_at - candidate.submitted_at <= timedelta(days=rule.window_days):
        return None
    same_grid = new.grid_id is not None and candidate.grid_id == new.grid_id
    distance = (distance_m(new.location, candidate.location)
                if new.location is not None and candidate.location is not None else None)
    if not same_grid and (distance is None or distance > rule.radius_m):
        return None
    return LikelyDuplicate(candidate.case_id, same_grid, distance, candidate.submitted_at)


def likely_duplicates(new: CaseAtIntake, candidates: Iterable[CaseAtIntake],
                      rule: DuplicateRule = DuplicateRule()) -> list[LikelyDuplicate]:
    """The candidates that are likely duplicates of ``new``, best first (see the module docstring)."""
    matches = [match for candidate in candidates if (match := _match(new, candidate, rule)) is not None]
    return sorted(matches, key=_best_first)


def _best_first(match: LikelyDuplicate) -> tuple:
    metres = None if match.distance_m is None else round(match.distance_m)
    return (metres is None, metres or 0, -match.submitted_at.timestamp(), match.case_id)
