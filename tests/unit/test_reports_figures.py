"""What reports shows, read from the projections its history built, against an in-memory store (no
broker, no database): a community's summary, and the communities known to reports."""
from datetime import date

import pytest

from services.common.web import NotFound
from services.reports import figures, scorecard
from tests.unit.fakes.reports_store import FakeReportsStore, FakeUnitOfWork
from tests.unit.test_reports_history import handle
from tests.unit.test_reports_projections import HISTORY, completed, feedback, message, registered

TODAY = date(2026, 11, 26)


def outcomes(community, channel, outcome, count, in_own_language):
    return message("notification.outcomes", {"community_id": community, "kind": "event_announced",
                                             "channel": channel, "outcome": outcome, "count": count,
                                             "in_own_language": in_own_language, "occurred_on": "2026-11-05"})


@pytest.fixture
def store():
    uow = FakeUnitOfWork(FakeReportsStore())
    # tongzilin keeps r2 (registered) and r4 (foreign); r3 moved to yulin, r1 left.
    handle(uow, [*HISTORY, registered("r4", nationality="DE", residence_type="foreign", minutes=6)])
    handle(uow, [completed("e1", 100, 80, 10), completed("e2", 50, 55, 0, category="lecture"),
                 feedback(10), feedback(9, resident="r2"), feedback(6, resident="r4"),
                 outcomes("tongzilin", "inapp", "sent", 90, 81), outcomes("tongzilin", "sms", "failed", 10, 10),
                 completed("e3", 10, 10, 0, starts="2026-10-08T10:00:00+08:00")])
    handle(uow, [outcomes("jinjiang", "email", "sent", 5, 5)])  # known by its activity alone
    return uow.store


def test_the_community_summary_from_projected_facts(store):
    assert figures.summary(store, "tongzilin", TODAY) == {
        "community_id": "tongzilin", "residents_total": 2,
        "residents_by_residence_type": {"registered": 1, "foreign": 1}, "foreign_share": 0.5,
        "this_month": {"month": "2026-11", "events_held": 2, "registrations": 150,
                       "attendance_rate": round(130 / 150, 4), "average_satisfaction": round(25 / 3, 4),
                       "notification_failure_rate": 0.1}}


def test_a_summary_of_a_month_with_nothing_has_no_rates(store):
    assert figures.summary(store, "yulin", TODAY)["this_month"] == {
        "month": "2026-11", "events_held": 0, "registrations": 0, "attendance_rate": None,
        "average_satisfaction": None, "notification_failure_rate": None}


def test_a_community_known_by_its_activity_alone_has_an_empty_profile(store):
    assert store.community_ids() == ["jinjiang", "tongzilin", "yulin"]
    profile = figures.profile_of(store, "jinjiang", TODAY)
    assert (profile["residents_total"], profile["residents_by_residence_type"]) == (0, {})


def test_a_community_reports_never_heard_of_is_not_found(store):
    with pytest.raises(NotFound, match="nowhere"):
        figures.profile_of(store, "nowhere", TODAY)
    with pytest.raises(NotFound, match="nowhere"):
        figures.require_community(store, "nowhere")


def test_the_months_asked_for_in_order(store):
    months = figures.activity_months(store, "tongzilin", "2026-10", "2026-11")
    assert [(m["month"], m["events_held"]) for m in months] == [("2026-10", 1), ("2026-11", 2)]
    assert [m["month"] for m in figures.activity_months(store, "tongzilin", "2026-11", "2026-12")] == ["2026-11"]


def test_the_city_overview_shows_only_the_communities_the_reader_may_see(store):
    overview = figures.city_overview(store, "2026-11", TODAY, may_see=lambda community: community != "yulin")
    assert [(row["community_id"], row["residents_total"], row["events_held"]) for row in overview["communities"]] \
        == [("jinjiang", 0, 0), ("tongzilin", 2, 2)]


def test_the_ranking_scores_every_known_community_from_its_month(store):
    ranked = figures.ranking(store, scorecard.load(), "2026-11", TODAY)
    assert (ranked[0]["community_id"], ranked[0]["rank"]) == ("tongzilin", 1)
    assert sorted(entry["community_id"] for entry in ranked) == ["jinjiang", "tongzilin", "yulin"]
    assert ranked[0]["score"] > ranked[1]["score"]
