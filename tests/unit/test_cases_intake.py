"""The cases service's intake and lifecycle use cases against an in-memory store (no broker, no database)."""
from datetime import datetime, timedelta, timezone

import pytest

from contracts import CASE_DISPATCHED, CASE_SUBMITTED
from services.cases import catalogue, handling, intake
from services.cases.lifecycle import Actor, IllegalTransition
from services.common.web import ValidationFailed
from tests.unit.fakes.cases_store import FakeCasesStore

CATALOGUE = catalogue.load()
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
COMMITTEE = Actor("committee")


def command(**overrides):
    return {"community_id": "tongzilin", "type_code": "streetlight", "description": "路灯不亮", "language": "zh-CN",
            "resident_id": None, "location": {"lat": 30.6188, "lon": 104.0712}, "grid_id": "tongzilin-g03",
            "attributes": {"fault": "not_lit"}, **overrides}


class Published(list):
    def __call__(self, message_type, data, **kwargs):
        self.append((message_type, message_type.dump(data), kwargs))  # refused here if the contract refuses it


def submit(store, published, at=NOW, **overrides):
    return intake.submit(store, None, published, command(**overrides), CATALOGUE, at)


def test_a_case_is_stored_with_its_text_and_announced_without_it():
    store, published = FakeCasesStore(), Published()
    answer = submit(store, published)
    stored = store.cases[answer["id"]]
    assert (stored["description"], stored["state"], stored["owner"], stored["version"]) == (
        "路灯不亮", "submitted", "community", 0)
    [(message_type, data, kwargs)] = published
    assert message_type is CASE_SUBMITTED and "路灯不亮" not in str(data) and "description" not in data
    assert (data["case_id"], data["grid_id"], kwargs["community"]) == (answer["id"], "tongzilin-g03", "tongzilin")


def test_likely_duplicates_are_the_same_type_nearby_within_the_week():
    store, published = FakeCasesStore(), Published()
    old = submit(store, published, at=NOW - timedelta(days=8))["id"]
    near = submit(store, published, at=NOW - timedelta(days=2), grid_id=None)["id"]
    submit(store, published, at=NOW - timedelta(hours=1), type_code="sanitation", attributes={"problems": ["litter"]})
    far = submit(store, published, at=NOW - timedelta(hours=2), grid_id="tongzilin-g09",
                 location={"lat": 30.63, "lon": 104.08})["id"]
    answer = submit(store, published)
    assert [d["id"] for d in answer["likely_duplicates"]] == [near]
    assert {old, far}.isdisjoint(store.cases[answer["id"]]["likely_duplicates"])
    assert published[-1][1]["likely_duplicates"] == [near]


@pytest.mark.parametrize("overrides, field", [
    ({"type_code": "flying_saucer"}, "type_code"),
    ({"attributes": {}}, "attributes"),
    ({"attributes": {"fault": "not_lit", "pole_number": 7}}, "attributes"),
    ({"attributes": {"fault": ["not_lit"]}}, "attributes"),
])
def test_a_case_its_type_refuses_is_a_400_naming_the_field_and_nothing_is_stored(overrides, field):
    store, published = FakeCasesStore(), Published()
    with pytest.raises(ValidationFailed) as refused:
        submit(store, published, **overrides)
    assert field in refused.value.details["fields"] and not store.cases and not published


def test_a_dispatch_sets_the_resolve_deadline_and_a_lost_race_is_a_conflict():
    store, published = FakeCasesStore(), Published()
    case_id = submit(store, published)["id"]
    due = NOW + timedelta(days=3)
    handling.act(store, None, published, case_id, "accept", COMMITTEE, {}, NOW, lambda record: None)
    answer = handling.act(store, None, published, case_id, "dispatch", COMMITTEE,
                          {"lead": "city-lighting", "co_handlers": []}, NOW, lambda record: due)
    assert answer == {"id": case_id, "state": "dispatched", "owner": "city-lighting"}
    assert store.cases[case_id]["resolve_due_at"] == due
    message_type, data, _ = published[-1]
    assert message_type is CASE_DISPATCHED and data["resolve_due_at"] == due.isoformat()
    with pytest.raises(IllegalTransition, match="cannot 'accept'"):
        handling.act(store, None, published, case_id, "accept", COMMITTEE, {}, NOW, lambda record: None)

    class Overtaken(FakeCasesStore):
        def save_step(self, case_id, version, changes, entry, session):
            return False  # someone else's step landed first

    racing = Overtaken()
    racing.cases = store.cases
    with pytest.raises(handling.CaseChanged):
        handling.act(racing, None, published, case_id, "acknowledge", Actor("department", "city-lighting"), {},
                     NOW, lambda record: None)
