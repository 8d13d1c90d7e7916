"""Likely duplicates at intake: same type, same grid or within 50 m, within the 7 days before; best first."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.cases.duplicates import (
    EARTH_MEAN_RADIUS_M, CaseAtIntake, DuplicateRule, Location, distance_m, likely_duplicates)

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 16, 10, 0, tzinfo=CST)
TIANFU_SQUARE = Location(30.6574, 104.0658)  # Chengdu, ~30.6°N


def north_of(place: Location, metres: float) -> Location:
    return Location(place.latitude + math.degrees(metres / EARTH_MEAN_RADIUS_M), place.longitude)


def east_of(place: Location, metres: float) -> Location:
    radius_of_parallel = EARTH_MEAN_RADIUS_M * math.cos(math.radians(place.latitude))
    return Location(place.latitude, place.longitude + math.degrees(metres / radius_of_parallel))


def new_case(**overrides) -> CaseAtIntake:
    values = dict(case_id="new", type_code="streetlight", submitted_at=NOW, grid_id=None, location=TIANFU_SQUARE)
    return CaseAtIntake(**{**values, **overrides})


def earlier(case_id, ago=timedelta(days=1), **overrides) -> CaseAtIntake:
    return new_case(case_id=case_id, submitted_at=NOW - ago, **overrides)


def ids(matches) -> list[str]:
    return [match.case_id for match in matches]


def test_one_degree_of_latitude_is_the_known_great_circle_length():
    # 2πR / 360 with the mean radius: 111,195.08 m, the textbook figure.
    assert distance_m(Location(30.0, 104.0), Location(31.0, 104.0)) == pytest.approx(111_195.08, abs=0.01)


@pytest.mark.parametrize("offset", [north_of, east_of])
def test_49_metres_away_is_a_likely_duplicate_and_51_is_not(offset):
    near, far = earlier("near", location=offset(TIANFU_SQUARE, 49)), earlier("far", location=offset(TIANFU_SQUARE, 51))
    matches = likely_duplicates(new_case(), [near, far])
    assert ids(matches) == ["near"]
    assert matches[0].distance_m == pytest.approx(49, abs=0.01) and not matches[0].same_grid


def test_exactly_the_radius_counts_and_the_radius_is_configurable():
    at_radius = earlier("at", location=north_of(TIANFU_SQUARE, 50 - 1e-6))
    eighty = earlier("eighty", location=east_of(TIANFU_SQUARE, 80))
    assert ids(likely_duplicates(new_case(), [at_radius, eighty])) == ["at"]
    assert ids(likely_duplicates(new_case(), [at_radius, eighty], DuplicateRule(radius_m=100))) == ["at", "eighty"]


def test_seven_days_before_counts_and_a_second_more_or_a_later_case_does_not():
    candidates = [earlier("seven_days", ago=timedelta(days=7)),
                  earlier("too_old", ago=timedelta(days=7, seconds=1)),
                  earlier("later", ago=-timedelta(seconds=1)),
                  earlier("same_moment", ago=timedelta(0))]
    assert sorted(ids(likely_duplicates(new_case(), candidates))) == ["same_moment", "seven_days"]
    assert ids(likely_duplicates(new_case(), candidates, DuplicateRule(window_days=1))) == ["same_moment"]


def test_the_window_is_measured_in_time_not_in_the_offsets_of_the_clocks():
    utc_seven_days_before = CaseAtIntake(
        case_id="utc", type_code="streetlight", submitted_at=(NOW - timedelta(days=7)).astimezone(timezone.utc),
        location=TIANFU_SQUARE)
    assert ids(likely_duplicates(new_case(), [utc_seven_days_before])) == ["utc"]


def test_cases_without_a_location_match_by_grid_only():
    new = new_case(grid_id="g-07", location=None)
    same_grid = earlier("same_grid", grid_id="g-07", location=TIANFU_SQUARE)
    other_grid = earlier("other_grid", grid_id="g-08", location=TIANFU_SQUARE)
    no_grid = earlier("no_grid", grid_id=None, location=TIANFU_SQUARE)
    matches = likely_duplicates(new, [same_grid, other_grid, no_grid])
    assert ids(matches) == ["same_grid"] and matches[0].distance_m is None and matches[0].same_grid
    # nor does a missing grid match another missing grid
    assert likely_duplicates(new_case(grid_id=None, location=None), [earlier("x", grid_id=None, location=None)]) == []


def test_the_same_grid_matches_however_far_apart():
    far_in_grid = earlier("far", grid_id="g-07", location=north_of(TIANFU_SQUARE, 400))
    matches = likely_duplicates(new_case(grid_id="g-07"), [far_in_grid])
    assert ids(matches) == ["far"] and matches[0].distance_m == pytest.approx(400, abs=0.01)


def test_a_different_type_never_matches_even_in_the_same_place_and_grid():
    other = earlier("noise", type_code="noise_at_night", grid_id="g-07", ago=timedelta(0))
    assert likely_duplicates(new_case(grid_id="g-07"), [other]) == []


def test_the_new_case_is_not_its_own_duplicate():
    assert likely_duplicates(new_case(), [new_case()]) == []


def test_best_first_nearest_to_the_metre_then_newest_then_grid_only():
    candidates = [
        earlier("grid_only_new", ago=timedelta(hours=1), grid_id="g-07", location=None),
        earlier("grid_only_old", ago=timedelta(days=3), grid_id="g-07", location=None),
        earlier("ten_m_old", ago=timedelta(days=5), location=north_of(TIANFU_SQUARE, 10)),
        earlier("ten_m_new", ago=timedelta(days=2), location=east_of(TIANFU_SQUARE, 10)),
        earlier("thirty_m", ago=timedelta(hours=2), location=north_of(TIANFU_SQUARE, 30)),
        earlier("here", ago=timedelta(days=6), grid_id="g-07", location=TIANFU_SQUARE),
    ]
    assert ids(likely_duplicates(new_case(grid_id="g-07"), candidates)) == [
        "here", "ten_m_new", "ten_m_old", "thirty_m", "grid_only_new", "grid_only_old"]


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="latitude"):
        Location(91, 104)
    with pytest.raises(ValueError, match="timezone-aware"):
        new_case(submitted_at=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="radius_m"):
        DuplicateRule(radius_m=-1)


places = st.builds(lambda north, east: east_of(north_of(TIANFU_SQUARE, north), east),
                   st.floats(-200, 200), st.floats(-200, 200))


@given(st.lists(st.tuples(st.sampled_from(["streetlight", "noise_at_night", "sanitation"]),
                          st.sampled_from([None, "g-07", "g-08"]), st.none() | places,
                          st.integers(-3600, 9 * 24 * 3600)), max_size=20))
def test_every_match_obeys_the_rule_and_the_order_is_best_first(rows):
    new = new_case(grid_id="g-07")
    candidates = [earlier(f"c{i}", type_code=kind, grid_id=grid, location=place, ago=timedelta(seconds=ago))
                  for i, (kind, grid, place, ago) in enumerate(rows)]
    matches = likely_duplicates(new, candidates)
    by_id = {candidate.case_id: candidate for candidate in candidates}
    for match in matches:
        candidate = by_id[match.case_id]
        assert candidate.type_code == "streetlight"
        assert timedelta(0) <= NOW - candidate.submitted_at <= timedelta(days=7)
        assert candidate.grid_id == "g-07" or (match.distance_m is not None and match.distance_m <= 50)
    keys = [(m.distance_m is None, round(m.distance_m or 0.0), -m.submitted_at.timestamp()) for m in matches]
    assert keys == sorted(keys)
    expected = {c.case_id for c in candidates if c.type_code == "streetlight"
                and timedelta(0) <= NOW - c.submitted_at <= timedelta(days=7)
                and (c.grid_id == "g-07" or (c.location is not None and distance_m(TIANFU_SQUARE, c.location) <= 50))}
    assert set(ids(matches)) == expected
