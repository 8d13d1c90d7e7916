"""The cases service against RabbitMQ and the database: intake, the lifecycle through its HTTP API, what reaches
the bus (ids and codes, never the free text), department isolation, likely duplicates and bad input."""
import json
from datetime import datetime

import pytest
import requests

from services.cases.service import CasesService
from services.common.auth import issue_token
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration
HOME, OTHER = "tongzilin", "yulin"
COMMITTEE_SCOPES = ["cases:read", "cases:write"]
DEPARTMENT_SCOPES = ["cases:read", "cases:write", "cases:department"]
DESCRIPTION = "小区东门第三根路灯三天不亮了,晚上很黑"
REPLY = "已于周三更换灯泡,恢复照明"
REOPEN_REASON = "灯又不亮了"


def streetlight(**overrides):
    return {"community_id": HOME, "type_code": "streetlight", "description": DESCRIPTION, "language": "zh-CN",
            "grid_id": "tongzilin-g03", "location": {"lat": 30.6188, "lon": 104.0712},
            "attributes": {"fault": "not_lit", "pole_number": "TZL-0318"}, **overrides}


def department_token(partner_id, communities=(HOME,), scopes=DEPARTMENT_SCOPES):
    return issue_token(TEST_SECRET, subject=f"partner:{partner_id}", scopes=list(scopes),
                       communities=list(communities))


@pytest.fixture
def cases(container_factory, config, free_port, token):
    address = f"127.0.0.1:{free_port()}"
    container_factory(CasesService, {**config, "WEB_SERVER_ADDRESS": address}).start()
    committee = token(COMMITTEE_SCOPES, communities=[HOME])

    def call(method, path, bearer=committee, **kwargs):
        return requests.request(method, f"http://{address}{path}", headers={"Authorization": f"Bearer {bearer}"},
                                timeout=30, **kwargs)

    return call


def submitted(cases, **overrides):
    response = cases("POST", "/cases", json=streetlight(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def act(cases, case_id, action, bearer=None, **arguments):
    kwargs = {"json": arguments} if arguments else {}
    return cases("POST", f"/cases/{case_id}/{action}", **({"bearer": bearer} if bearer else {}), **kwargs)


def test_a_case_from_intake_to_close_each_step_a_fact_without_free_text(cases, bus_tap):
    tap = bus_tap("cases")
    lighting = department_token("city-lighting")
    case_id = submitted(cases)["id"]
    steps = [("accept", None, {}), ("dispatch", None, {"lead": "city-lighting"}), ("acknowledge", lighting, {}),
             ("resolve", lighting, {"reply": REPLY}), ("call_back", None, {"satisfaction": "satisfied"}),
             ("close", None, {})]
    for action, bearer, arguments in steps:
        response = act(cases, case_id, action, bearer, **arguments)
        assert response.status_code == 200, f"{action}: {response.text}"
    view = cases("GET", f"/cases/{case_id}").json()
    assert (view["state"], view["description"], view["reply"], view["satisfaction"]) == (
        "closed", DESCRIPTION, REPLY, "satisfied")
    assert [entry["by"] for entry in view["history"]] == [
        "committee", "committee", "committee", "city-lighting", "city-lighting", "committee", "committee"]

    messages = tap.messages(until=lambda found: len(found) >= 7)
    assert [m["type"] for m in messages] == ["case.submitted", "case.accepted", "case.dispatched",
                                             "case.acknowledged", "case.resolved", "case.called_back", "case.closed"]
    assert all(m["data"]["case_id"] == case_id and m["community"] == HOME for m in messages)
    wire = json.dumps(messages, ensure_ascii=False)
    for text in (DESCRIPTION, REPLY, "TZL-0318", "30.6188"):
        assert text not in wire, f"{text!r} reached the bus"
    dispatched, acknowledged = messages[2]["data"], messages[3]["data"]
    assert (dispatched["lead"], dispatched["owner"], acknowledged["by"]) == ("city-lighting", "city-lighting",
                                                                            "city-lighting")
    assert datetime.fromisoformat(dispatched["resolve_due_at"]) > datetime.fromisoformat(dispatched["dispatched_at"])


def test_a_rejected_case_returns_to_the_committee_and_an_unsatisfied_resident_reopens_it(cases, bus_tap):
    tap = bus_tap("cases")
    housing = department_token("housing-management")
    case_id = submitted(cases)["id"]
    act(cases, case_id, "accept")
    act(cases, case_id, "dispatch", lead="housing-management")
    rejected = act(cases, case_id, "reject", housing, reason_code="outside_jurisdiction",
                   suggested_owner="city-lighting")
    assert rejected.json() == {"id": case_id, "state": "accepted", "owner": "community"}
    assert cases("GET", f"/cases/{case_id}", bearer=housing).status_code == 404  # no longer its case
    act(cases, case_id, "dispatch", lead="community")  # the committee keeps it (首接负责)
    assert act(cases, case_id, "reject", reason_code="outside_area").json()["error"] == "first_receiver_responsible"
    for action, arguments in (("acknowledge", {}), ("resolve", {"reply": REPLY}),
                              ("call_back", {"satisfaction": "unsatisfied", "cause": "recurring_problem"}),
                              ("reopen", {"reason_code": "recurring_problem", "reason": REOPEN_REASON})):
        assert act(cases, case_id, action, **arguments).status_code == 200, action
    messages = tap.messages(until=lambda found: any(m["type"] == "case.reopened" for m in found))
    by_type = {m["type"]: m["data"] for m in messages}
    assert by_type["case.rejected"] | {"rejected_at": None} == {
        "case_id": case_id, "community_id": HOME, "type_code": "streetlight", "state": "accepted",
        "owner": "community", "rejected_at": None, "rejected_by": "housing-management",
        "reason_code": "outside_jurisdiction", "suggested_owner": "city-lighting"}
    assert (by_type["case.reopened"]["cause_code"], by_type["case.reopened"]["times_reopened"]) == (
        "recurring_problem", 1)
    assert REOPEN_REASON not in json.dumps(messages, ensure_ascii=False)


def test_an_illegal_transition_is_a_409_naming_the_rule(cases):
    case_id = submitted(cases)["id"]
    early = act(cases, case_id, "dispatch", lead="city-lighting")
    assert early.status_code == 409
    assert early.json()["error"] == "illegal_transition"
    assert early.json()["details"] == {"state": "submitted", "action": "dispatch", "allowed_actions": ["accept"]}
    act(cases, case_id, "accept")
    act(cases, case_id, "dispatch", lead="city-lighting")
    not_theirs = act(cases, case_id, "acknowledge")  # the committee is not the lead department
    assert (not_theirs.status_code, not_theirs.json()["error"]) == (409, "actor_not_allowed")
    assert not_theirs.json()["details"]["allowed_roles"] == ["lead"]


def test_a_department_sees_only_the_cases_routed_to_it(cases):
    case_id = submitted(cases)["id"]
    act(cases, case_id, "accept")
    act(cases, case_id, "dispatch", lead="city-lighting", co_handlers=["urban-management"])
    lighting, co_handler = department_token("city-lighting"), department_token("urban-management")
    seen = cases("GET", f"/cases/{case_id}", bearer=lighting)
    assert seen.status_code == 200 and seen.json()["allowed_actions"] == ["acknowledge", "reject"]
    assert "resident_id" not in seen.json()  # not shown to departments
    assert cases("GET", f"/cases/{case_id}", bearer=co_handler).status_code == 200
    other = department_token("sanitation")
    assert cases("GET", f"/cases/{case_id}", bearer=other).status_code == 404
    assert act(cases, case_id, "acknowledge", other).status_code == 404
    elsewhere = cases("GET", f"/cases/{case_id}", bearer=department_token("city-lighting", communities=[OTHER]))
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (403, "outside_token_communities")
    unscoped = department_token("city-lighting", scopes=COMMITTEE_SCOPES)  # a partner is never the committee
    assert cases("GET", f"/cases/{case_id}", bearer=unscoped).status_code == 403
    assert cases("POST", "/cases", bearer=lighting, json=streetlight()).status_code == 403
    assert cases("GET", f"/cases/{case_id}").json()["resident_id"] is None  # the committee's view has the field


def test_a_likely_duplicate_is_suggested_at_intake(cases):
    first = submitted(cases)
    assert first["likely_duplicates"] == []
    nearby = submitted(cases, grid_id="tongzilin-g04", location={"lat": 30.6190, "lon": 104.0712})  # ~22 m
    assert [d["id"] for d in nearby["likely_duplicates"]] == [first["id"]]
    assert 15 < nearby["likely_duplicates"][0]["distance_m"] < 30
    other_type = submitted(cases, type_code="sanitation", attributes={"problems": ["bin_overflowing"]})
    assert other_type["likely_duplicates"] == []


@pytest.mark.parametrize("body, field", [
    (streetlight(type_code="flying_saucer"), "type_code"),
    (streetlight(attributes={}), "attributes"),
    (streetlight(attributes={"fault": "exploded"}), "attributes"),
    (streetlight(attributes={"fault": "not_lit", "colour": "red"}), "attributes"),
    (streetlight(location={"lat": 91, "lon": 0}), "location"),
    (streetlight(language="not a language"), "language"),
    ({k: v for k, v in streetlight().items() if k != "description"}, "description"),
])
def test_bad_input_is_a_specific_400(cases, body, field):
    response = cases("POST", "/cases", json=body)
    assert (response.status_code, response.json()["error"]) == (400, "validation_failed"), response.text
    assert field in response.json()["details"]["fields"]


def test_bad_actions_and_arguments_are_specific_4xx(cases, token):
    case_id = submitted(cases)["id"]
    assert act(cases, case_id, "teleport").json()["error"] == "unknown_action"
    act(cases, case_id, "accept")
    bad = act(cases, case_id, "dispatch", lead="City Lighting!")
    assert (bad.status_code, list(bad.json()["details"]["fields"])) == (400, ["lead"])
    junk = cases("POST", f"/cases/{case_id}/dispatch", data=b"{not json")
    assert (junk.status_code, junk.json()["error"]) == (400, "invalid_json")
    assert cases("GET", "/cases/0123456789abcdef01234567").status_code == 404
    assert cases("GET", "/cases/not-an-id").status_code == 404
    foreign = cases("POST", "/cases", bearer=token(COMMITTEE_SCOPES, communities=[OTHER]), json=streetlight())
    assert (foreign.status_code, foreign.json()["error"]) == (403, "outside_token_communities")


def test_the_catalogue_is_read_through_the_api(cases):
    types = cases("GET", "/case-types").json()["items"]
    assert "streetlight" in [t["code"] for t in types]
    streetlight_type = cases("GET", "/case-types/streetlight").json()
    assert streetlight_type["name"] == {"zh-CN": "路灯故障", "en": "Streetlight out of order"}
    assert streetlight_type["sla"]["resolve"] == {"amount": 3, "unit": "working_days"}
    unknown = cases("GET", "/case-types/flying_saucer")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_case_type")
