"""Reports' projections as pure functions: figures from a known history, in any order."""
import itertools
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest

from contracts import build_envelope, parse_envelope
from services.reports import activity, profile, scorecard

T0 = datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc)


def message(type_name, data, minutes=0):
    envelope = build_envelope(type_name, data, source="linli/test")
    wire = envelope.to_wire() | {"time": (T0 + timedelta(minutes=minutes)).isoformat()}
    return parse_envelope(wire)


def registered(resident, community="tongzilin", minutes=0, **facts):
    data = {"resident_id": resident, "community_id": community, "residence_type": "registered",
            "nationality": "CN", "preferred_language": "zh-CN", "birth_year": 1980, "tags": [], **facts}
    return message("resident.registered", data, minutes)


def play(messages):
    """Apply messages to an in-memory projection, as ``profile.apply`` does to the database."""
    states, counters = {}, {}
    for envelope in messages:
        resident_id, _ = profile.changes_of(envelope)
        states[resident_id], deltas = profile.transition(states.get(resident_id), envelope)
        for community, counts in deltas.items():
            counters.setdefault(community, Counter()).update(counts)
    return {c: {k: v for k, v in counts.items() if v} for c, counts in counters.items()}


HISTORY = [
    registered("r1", nationality="FR", residence_type="foreign", birth_year=1990, tags=["volunteer"], minutes=0),
    registered("r2", birth_year=1950, minutes=1),
    registered("r3", nationality="US", residence_type="foreign", birth_year=2015, minutes=2),
    message("resident.updated", {"resident_id": "r2", "community_id": "tongzilin", "changed_fields": ["tags"],
                                 "tags": ["elderly", "volunteer"]}, 3),
    message("resident.moved", {"resident_id": "r3", "community_id": "yulin", "from_community_id": "tongzilin",
                               "residence_type": "foreign", "moved_on": "2026-11-20"}, 4),
    message("resident.departed", {"resident_id": "r1", "community_id": "tongzilin", "residence_type": "foreign",
                                  "reason": "moved_away", "departed_on": "2026-12-01"}, 5),
]

EXPECTED = {
    # r2 alone stays in tongzilin; r1 left in December, r3 moved to yulin in November.
    "tongzilin": {"residents_total": 1, "by_residence_type.registered": 1, "by_nationality.CN": 1,
                  "by_birth_year.1950": 1, "by_tag.elderly": 1, "by_tag.volunteer": 1,
                  "arrivals.2026-11": 3, "departures.2026-11": 1, "departures.2026-12": 1},
    "yulin": {"residents_total": 1, "by_residence_type.foreign": 1, "by_nationality.US": 1,
              "by_birth_year.2015": 1, "arrivals.2026-11": 1},
}


def test_the_profile_of_a_known_history():
    assert play(HISTORY) == EXPECTED


@pytest.mark.parametrize("order", list(itertools.islice(itertools.permutations(range(len(HISTORY))), 0, None, 37)))
def test_the_profile_does_not_depend_on_the_order_messages_arrive_in(order):
    assert play([HISTORY[i] for i in order]) == EXPECTED


def test_views_derive_shares_bands_and_top_nationalities():
    doc = {"_id": "tongzilin", "residents_total": 10, "by_residence_type": {"foreign": 3, "registered": 7},
           "by_nationality": {"CN": 7, "FR": 1, "US": 1, "KR": 1}, "by_birth_year": {"2015": 2, "1990": 5,
                                                                                       "1950": 2, "unknown": 1},
           "by_tag": {"volunteer": 2, "x": 0}}
    view = profile.view(doc, date(2026, 11, 26), top_n=2)
    assert view["foreign_share"] == 0.3
    assert view["residents_by_nationality"] == {"CN": 7, "FR": 1, "other": 2}
    assert view["residents_by_age_band"] == {"0-14": 2, "15-34": 0, "35-59": 5, "60+": 2, "unknown": 1}
    assert view["residents_by_tag"] == {"volunteer": 2}


def test_keys_with_dots_are_safe_field_names():
    assert "." not in profile.key("a.b") and "$" not in profile.key("$x")


def completed(event, registered_n, attended, waitlisted, category="food", starts="2026-11-12T10:00:00+08:00"):
    return message("event.completed", {"event_id": event, "community_id": "tongzilin", "category": category,
                                       "starts_at": starts, "registered": registered_n, "attended": attended,
                                       "waitlisted": waitlisted})


def feedback(rating, resident="r1"):
    return message("feedback.submitted", {"event_id": "e1", "resident_id": resident, "community_id": "tongzilin",
                                          "category": "food", "rating": rating, "has_comment": False})


def month_view(messages):
    doc = {"month": "2026-11"}
    for envelope in messages:
        found = activity.increments(envelope)
        if found:
            for path, n in found[2].items():
                node = doc
                *parents, leaf = path.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = node.get(leaf, 0) + n
    return activity.view(doc)


def test_monthly_activity_from_a_known_history():
    figures = month_view([
        completed("e1", 100, 80, 10), completed("e2", 50, 55, 0, category="lecture"),
        feedback(10), feedback(9), feedback(6),
        message("notification.outcomes", {"community_id": "tongzilin", "kind": "event_announced",
                                          "channel": "inapp", "outcome": "sent", "count": 90,
                                          "in_own_language": 81, "occurred_on": "2026-11-05"}),
        message("notification.outcomes", {"community_id": "tongzilin", "kind": "welcome", "channel": "sms",
                                          "outcome": "failed", "count": 10, "in_own_language": 10,
                                          "occurred_on": "2026-11-05"}),
    ])
    assert figures["events_held"] == 2 and figures["events_held_by_category"] == {"food": 1, "lecture": 1}
    assert figures["registrations"] == 150 and figures["attendance"] == 135
    # e2 had 5 walk-ins: attendance of the registered counts at most the registered.
    assert figures["attendance_rate"] == round(130 / 150, 4) and figures["no_show_rate"] == round(20 / 150, 4)
    assert figures["waitlist_pressure"] == round(10 / 150, 4)
    assert figures["average_satisfaction"] == round(25 / 3, 4) and figures["satisfaction_9_plus_share"] == 0.6667
    assert figures["satisfaction_distribution"]["10"] == 1 and figures["satisfaction_distribution"]["6"] == 1
    assert figures["notification_failure_rate"] == 0.1 and figures["notified_in_own_language_share"] == 0.9


def test_a_month_with_nothing_to_divide_by_has_no_rates():
    figures = activity.view({"month": "2026-11"})
    assert figures["attendance_rate"] is None and figures["average_satisfaction"] is None


def test_scorecard_weights_come_from_the_config(tmp_path):
    config = tmp_path / "card.yaml"
    config.write_text("demonstration_threshold: 70\ncriteria:\n"
                      "  - {name: events_per_month, target: 4, weight: 60}\n"
                      "  - {name: satisfaction_9_plus, target: 0.5, weight: 40}\n")
    card = scorecard.load(config)
    month = {"events_held": 2, "satisfaction_9_plus_share": 0.75}
    result = scorecard.score(card, month, {"residents_total": 100})
    assert result["score"] == 70.0 and result["demonstration"]  # 60 * 2/4 + 40 * min(1, 1.5)
    assert [c["points"] for c in result["criteria"]] == [30.0, 40.0]
    none = scorecard.score(card, {"events_held": 0, "satisfaction_9_plus_share": None}, {"residents_total": 0})
    assert none["score"] == 0 and none["criteria"][1]["value"] is None and not none["demonstration"]


def test_the_default_scorecard_loads_and_ranks_with_shared_places():
    card = scorecard.load()
    assert sum(c.weight for c in card.criteria) == 100
    ranked = scorecard.rank({"b": {"score": 80}, "a": {"score": 80}, "c": {"score": 95}})
    assert [(r["community_id"], r["rank"]) for r in ranked] == [("c", 1), ("a", 2), ("b", 2)]


def test_an_unknown_criterion_is_refused(tmp_path):
    config = tmp_path / "card.yaml"
    config.write_text("criteria:\n  - {name: happiness, target: 1, weight: 1}\n")
    with pytest.raises(scorecard.ScorecardError, match="happiness"):
        scorecard.load(config)
