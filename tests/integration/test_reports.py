"""Reports against a known message history on the real bus: projections, rebuild, scorecard, gauges."""
import time

import pytest
import requests
from kombu import Connection, Exchange
from nameko.standalone.rpc import ServiceRpcProxy

from contracts import build_envelope
from services.reports.service import ReportsService
from tests.waiting import until

pytestmark = pytest.mark.integration

MONTH = "2026-11"


def envelope(type_name, data, time_iso=f"{MONTH}-05T02:00:00+00:00", version=None):
    wire = build_envelope(type_name, data, source="linli/test", version=version).to_wire()
    return {**wire, "time": time_iso}


def resident(resident_id, community="tongzilin", **facts):
    return envelope("resident.registered", {
        "resident_id": resident_id, "community_id": community, "residence_type": "registered",
        "nationality": "CN", "preferred_language": "zh-CN", "birth_year": 1985, "tags": [], **facts})


HISTORY = [
    ("residents", resident("r1", residence_type="foreign", nationality="FR", birth_year=1990, tags=["volunteer"])),
    ("residents", resident("r2", birth_year=1950)),
    ("residents", resident("r3", residence_type="foreign", nationality="KR", birth_year=2012)),
    ("residents", resident("r4", community="yulin")),
    ("residents", envelope("resident.departed", {"resident_id": "r3", "community_id": "tongzilin",
                                                 "residence_type": "foreign", "reason": "moved_away",
                                                 "departed_on": f"{MONTH}-20"}, f"{MONTH}-20T02:00:00+00:00")),
    ("events", envelope("event.completed", {"event_id": "e1", "community_id": "tongzilin", "category": "food",
                                            "starts_at": f"{MONTH}-12T10:00:00+08:00", "registered": 40,
                                            "attended": 30, "waitlisted": 8})),
    ("events", envelope("feedback.submitted", {"event_id": "e1", "resident_id": "r1", "community_id": "tongzilin",
                                               "category": "food", "rating": 10, "has_comment": True})),
    ("events", envelope("feedback.submitted", {"event_id": "e1", "resident_id": "r2", "community_id": "tongzilin",
                                               "category": "food", "rating": 7, "has_comment": False})),
    # Cases' facts: recorded in the history (a rebuild replays them), nothing of the activity moves yet.
    ("cases", envelope("case.submitted", {
        "case_id": "c1", "community_id": "tongzilin", "type_code": "streetlight", "state": "submitted",
        "owner": "community", "submitted_at": f"{MONTH}-05T10:00:00+08:00", "channel": "api", "language": "zh-CN"})),
    ("cases", envelope("case.accepted", {
        "case_id": "c1", "community_id": "tongzilin", "type_code": "streetlight", "state": "accepted",
        "owner": "community", "accepted_at": f"{MONTH}-05T10:30:00+08:00"})),
    ("notifications", envelope("notification.outcomes", {
        "community_id": "tongzilin", "kind": "event_announced", "channel": "inapp", "outcome": "sent",
        "count": 3, "in_own_language": 3, "occurred_on": f"{MONTH}-05"})),
    ("notifications", envelope("notification.outcomes", {
        "community_id": "tongzilin", "kind": "welcome", "channel": "email", "outcome": "failed",
        "count": 1, "in_own_language": 1, "occurred_on": f"{MONTH}-05"})),
    # A type from a newer build: kept and counted, not projected.
    ("residents", {**resident("r9"), "type": "resident.reincarnated", "data": {"resident_id": "r9"},
                   "dataschema": "urn:linli:contracts:resident.reincarnated:v1"}),
]


def publish(amqp_uri, messages, times=1):
    with Connection(amqp_uri) as connection:
        producer = connection.Producer()
        for _ in range(times):
            for source, body in messages:
                producer.publish(body, exchange=Exchange(f"{source}.events", type="topic", durable=True),
                                 routing_key=body["type"], serializer="json")


@pytest.fixture
def reports(container_factory, config, token):
    container = container_factory(ReportsService, {**config, "REBUILD_GRACE_SECONDS": 0.1})
    container.start()
    url = f"http://{config['WEB_SERVER_ADDRESS']}"
    committee = {"Authorization": f"Bearer {token(['reports:read'], communities=['*'])}"}

    class Reports:
        def get(self, path, headers=committee, **params):
            return requests.get(url + path, headers=headers, params=params)

        def wait_for_history(self):
            def arrived():
                unknown = self.get("/history/unknown").json()["unknown_messages"]
                summary = self.get("/communities/yulin/summary")
                return unknown and summary.status_code == 200 and self.get(
                    f"/communities/tongzilin/activity?from={MONTH}&to={MONTH}").json()["months"][0].get(
                    "notifications_by_channel", {}).get("email")
            until(arrived, "the history", timeout_s=20)

        def everything(self):
            return {path: self.get(path).json() for path in (
                "/communities/tongzilin/profile", "/communities/yulin/profile",
                f"/communities/tongzilin/activity?from=2026-10&to={MONTH}", f"/city/overview?month={MONTH}",
                f"/scorecard?month={MONTH}", "/history/unknown", "/communities/tongzilin/summary")}

    return Reports()


def test_projections_from_a_known_history_and_a_rebuild_gives_the_same(reports, config):
    publish(config["AMQP_URI"], HISTORY, times=2)  # every message twice: counted once
    reports.wait_for_history()
    time.sleep(1)  # the duplicates, too, have been seen

    profile = reports.get("/communities/tongzilin/profile").json()
    assert profile["residents_total"] == 2  # r3 departed
    assert profile["residents_by_residence_type"] == {"foreign": 1, "registered": 1}
    assert profile["foreign_share"] == 0.5
    assert profile["residents_by_nationality"] == {"CN": 1, "FR": 1}
    assert profile["residents_by_age_band"]["60+"] == 1 and profile["residents_by_age_band"]["35-59"] == 1
    assert profile["residents_by_tag"] == {"volunteer": 1}
    assert profile["arrivals_by_month"] == {MONTH: 3} and profile["departures_by_month"] == {MONTH: 1}

    # Nothing happened in October: only November has a row.
    [november] = reports.get(f"/communities/tongzilin/activity?from=2026-10&to={MONTH}").json()["months"]
    assert november["events_held"] == 1 and november["events_held_by_category"] == {"food": 1}
    assert (november["registrations"], november["attendance"]) == (40, 30)
    assert november["attendance_rate"] == 0.75 and november["no_show_rate"] == 0.25
    assert november["waitlist_pressure"] == 0.2
    assert november["average_satisfaction"] == 8.5 and november["satisfaction_9_plus_share"] == 0.5
    assert november["notifications_by_channel"] == {"email": {"failed": 1}, "inapp": {"sent": 3}}
    assert november["notification_failure_rate"] == 0.25

    city = reports.get(f"/city/overview?month={MONTH}").json()["communities"]
    assert [(c["community_id"], c["residents_total"]) for c in city] == [("tongzilin", 2), ("yulin", 1)]
    ranking = reports.get(f"/scorecard?month={MONTH}").json()["communities"]
    assert [c["community_id"] for c in ranking] == ["tongzilin", "yulin"] and ranking[0]["rank"] == 1
    criteria = {c["name"]: c for c in ranking[0]["criteria"]}
    assert criteria["events_per_month"]["value"] == 1 and criteria["events_per_month"]["points"] == 3.12
    assert criteria["participation_rate"]["value"] == 15.0  # 30 attendances, 2 residents
    assert reports.get("/history/unknown").json()["unknown_messages"] == {"resident\uff0ereincarnated:v1": 1}

    live = reports.everything()
    with ServiceRpcProxy("reports", config) as rpc:
        assert rpc.city_overview(MONTH)["communities"] == city
        assert rpc.profile("tongzilin") == profile
        rebuilt = rpc.rebuild()
    assert rebuilt["messages"] == len(HISTORY)
    assert reports.everything() == live


def test_a_rebuild_while_messages_arrive_misses_none_and_doubles_none(reports, config):
    first = [("residents", resident(f"a{n}")) for n in range(150)]
    second = [("residents", resident(f"b{n}")) for n in range(150)]
    publish(config["AMQP_URI"], first)
    def residents_total():
        return reports.get("/communities/tongzilin/summary").json().get("residents_total")

    until(lambda: residents_total() == 150, "the first 150 residents", timeout_s=30)
    with ServiceRpcProxy("reports", config) as rpc:
        pending = rpc.rebuild.call_async()
        publish(config["AMQP_URI"], second)
        pending.result()
    until(lambda: residents_total() == 300, "all 300 residents", timeout_s=30)
    time.sleep(1)
    assert reports.get("/communities/tongzilin/profile").json()["arrivals_by_month"] == {MONTH: 300}


def test_assessment_is_published_once_per_community_and_month(reports, config, bus_tap):
    tap = bus_tap("reports")
    publish(config["AMQP_URI"], HISTORY)
    reports.wait_for_history()
    with ServiceRpcProxy("reports", config) as rpc:
        assert rpc.assess(MONTH) == 2
        assert rpc.assess(MONTH) == 2
    assessed = [m for m in tap.messages() if m["type"] == "community.assessed"]
    assert len(assessed) == 4 and len({m["id"] for m in assessed}) == 2  # the same ids the second time
    first = next(m["data"] for m in assessed if m["data"]["community_id"] == "tongzilin")
    assert first["rank"] == 1 and first["communities_ranked"] == 2 and first["month"] == MONTH


def test_business_gauges_are_exposed_beside_the_technical_metrics(reports, config):
    publish(config["AMQP_URI"], HISTORY)
    reports.wait_for_history()
    metrics = requests.get(f"http://{config['WEB_SERVER_ADDRESS']}/metrics").text
    assert 'linli_community_residents{community="tongzilin"} 2.0' in metrics
    assert 'linli_community_foreign_residents{community="tongzilin"} 1.0' in metrics
    assert "linli_entrypoint_calls_total" in metrics


def test_bad_months_and_unknown_communities(reports, token):
    assert reports.get("/communities/nowhere/summary").status_code == 404
    bad = reports.get("/communities/tongzilin/activity", **{"from": "2026-13"})
    assert bad.status_code == 400 and "from" in bad.json()["message"]
    backwards = reports.get("/communities/tongzilin/activity", **{"from": "2026-11", "to": "2026-01"})
    assert backwards.status_code == 400 and "after" in backwards.json()["message"]
    assert reports.get("/scorecard", month="November").status_code == 400
    other = {"Authorization": f"Bearer {token(['reports:read'], communities=['yulin'])}"}
    assert reports.get("/communities/tongzilin/profile", headers=other).status_code == 403


def test_a_rebuild_is_city_wide_and_needs_every_community(reports, config, token):
    rebuild = f"http://{config['WEB_SERVER_ADDRESS']}/projections/rebuild"
    local = requests.post(rebuild, headers={"Authorization": f"Bearer {token(['reports:admin'], ['tongzilin'])}"})
    assert local.status_code == 403 and local.json()["error"] == "outside_token_communities", local.text
    assert local.json()["details"]["communities"] == ["*"]
    city = requests.post(rebuild, headers={"Authorization": f"Bearer {token(['reports:admin'], ['*'])}"})
    assert city.status_code == 200, city.text
