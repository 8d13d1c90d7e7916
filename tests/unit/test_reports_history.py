"""Reports' history against an in-memory store (no broker, no database): each message is projected once
however often it is handled, and a rebuild from the history gives the figures the live path gave, also
when messages arrive while it runs. (The projections' arithmetic: test_reports_projections.py.)"""
from datetime import date

import pytest
from pymongo.errors import DuplicateKeyError

from contracts import build_envelope, parse_envelope_or_unknown
from services.common.community_time import community_zone
from services.reports import figures, history, profile, scorecard
from tests.unit.fakes.reports_store import FakeReportsStore, FakeUnitOfWork
from tests.unit.test_reports_projections import HISTORY, completed, feedback, registered

ZONE = community_zone()
TODAY = date(2026, 11, 26)


def unknown_message():
    """A type this build has no contract for: kept in the history, counted, projected nowhere."""
    wire = build_envelope("resident.departed", {"resident_id": "r9", "community_id": "tongzilin",
                                                "residence_type": "foreign", "reason": "moved_away",
                                                "departed_on": "2026-11-30"}, source="linli/test").to_wire()
    return parse_envelope_or_unknown({**wire, "type": "parcel.delivered", "data": {"parcel": "p1"}})[0]


MESSAGES = [*HISTORY, completed("e1", 100, 80, 10), completed("e2", 50, 55, 0, category="lecture"),
            feedback(10), feedback(9, resident="r2"), unknown_message()]


@pytest.fixture
def uow():
    return FakeUnitOfWork(FakeReportsStore())


def handle(uow, envelopes):
    """As the consumer does: the batch recorded in one transaction (``exactly_once``'s)."""
    uow.transaction(lambda session, publish: history.record(uow.store, envelopes, session, ZONE))


def handle_in_batches(uow, envelopes, size=3):
    for start in range(0, len(envelopes), size):
        handle(uow, envelopes[start:start + size])


def rebuild(uow):
    return history.rebuild(uow.store, uow.transaction, ZONE, page_size=2, grace_s=0)


def figures_of(store) -> dict:
    """Everything reports shows, read through its use cases."""
    communities = store.community_ids()
    return {"overview": figures.city_overview(store, "2026-11", TODAY),
            "profiles": {c: figures.profile_of(store, c, TODAY) for c in communities},
            "months": {c: figures.activity_months(store, c, "2026-01", "2026-12") for c in communities},
            "ranking": figures.ranking(store, scorecard.load(), "2026-11", TODAY),
            "unknown": store.unknown_counts()}



def test_a_message_handled_twice_is_projected_once(uow):
    handle(uow, MESSAGES[:3])
    once = figures_of(uow.store)
    assert once["profiles"]["tongzilin"]["residents_total"] == 3
    with pytest.raises(DuplicateKeyError):
        handle(uow, [MESSAGES[1]])
    with pytest.raises(DuplicateKeyError):  # a batch holding one seen already is refused whole
        handle(uow, [MESSAGES[3], MESSAGES[2]])
    assert figures_of(uow.store) == once
    assert list(uow.store.history) == [m.id for m in MESSAGES[:3]]


def test_a_rebuild_from_the_history_gives_the_figures_the_live_path_gave(uow):
    handle_in_batches(uow, MESSAGES)
    live = figures_of(uow.store)
    assert [live["profiles"][c]["residents_total"] for c in ("tongzilin", "yulin")] == [1, 1]
    assert [m["events_held"] for m in live["months"]["tongzilin"]] == [2]
    assert live["unknown"] == {profile.key("parcel.delivered:v1"): 1}
    uow.store.profiles["tongzilin"]["residents_total"] = 999  # projections gone wrong: the history decides
    done = rebuild(uow)
    assert (done["messages"], done["generation"]) == (len(MESSAGES), 1)
    assert figures_of(uow.store) == live
    assert not uow.store.projection_state()["rebuilding"]
    assert uow.published == []


def test_a_message_arriving_during_a_rebuild_is_applied_once_before_the_rebuild_ends(uow):
    late = registered("r5", nationality="KR", residence_type="foreign", minutes=9)
    handle_in_batches(uow, MESSAGES)
    seen = {}

    def arrives():
        handle(uow, [late])
        seen["state"] = uow.store.projection_state()

    uow.store.meanwhile = arrives
    done = rebuild(uow)
    assert seen["state"]["rebuilding"] and seen["state"]["arrived_during_rebuild"] == 1
    assert done["messages"] == len(MESSAGES) + 1
    every_message_live = FakeUnitOfWork(FakeReportsStore())
    handle_in_batches(every_message_live, [*MESSAGES, late])
    assert figures_of(uow.store) == figures_of(every_message_live.store)
    assert uow.store.projection_state()["arrived_during_rebuild"] == 0


def test_a_rebuild_while_one_runs_is_refused(uow):
    handle(uow, MESSAGES[:3])
    refused = []

    def second_rebuild():
        with pytest.raises(history.RebuildRunning):
            rebuild(uow)
        refused.append(uow.store.projection_state()["generation"])

    uow.store.meanwhile = second_rebuild
    assert rebuild(uow)["generation"] == 1
    assert refused == [1]
    assert figures_of(uow.store)["profiles"]["tongzilin"]["residents_total"] == 3
