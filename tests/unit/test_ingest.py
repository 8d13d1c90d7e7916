"""The ingest door's checks, as pure functions: each kind of bad input gives its own error."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from contracts import EVENT_PROPOSED, INGEST_TYPES, RESIDENT_FORM_SUBMITTED, InvalidPayload, registry
from contracts.client import MessageTooLarge, NotAnIngestType, Publisher, parse_feed_message
from contracts.ingest import MAX_INGEST_BYTES
from services.common.ingest import IngestRejected, check_body, flatten
from services.events.ingest import proposal_command
from services.residents.ingest import row_command


def wire(type_name="resident.form_submitted", data=None, **overrides):
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "grid-system/tongzilin", "type": type_name,
            "time": "2026-11-20T09:30:00+08:00", "dataschema": f"urn:linli:contracts:{type_name}:v1",
            "data": RESIDENT_FORM_SUBMITTED.example if data is None else data, **overrides}


def body(message) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode()


def rejected(raw, content_type="application/json", routing_key="resident.form_submitted") -> IngestRejected:
    with pytest.raises(IngestRejected) as raised:
        check_body(raw, content_type, routing_key)
    return raised.value


def test_a_good_message_gives_its_envelope_with_either_json_content_type():
    for content_type in ("application/json", "application/cloudevents+json; charset=utf-8"):
        envelope = check_body(body(wire()), content_type, "resident.form_submitted")
        assert envelope.type == "resident.form_submitted" and envelope.data["community_id"] == "tongzilin"


@pytest.mark.parametrize("raw, content_type, routing_key, code, status", [
    (b"{not json", "application/json", "resident.form_submitted", "invalid_json", 400),
    (b"\xff\xfe", "application/json", "resident.form_submitted", "invalid_json", 400),
    (b"[1, 2]", "application/json", "resident.form_submitted", "not_an_object", 400),
    (body(wire()), "text/plain", "resident.form_submitted", "unsupported_content_type", 415),
    (body(wire()), None, "resident.form_submitted", "unsupported_content_type", 415),
    (b" " * (MAX_INGEST_BYTES + 1), "application/json", "resident.form_submitted", "body_too_large", 413),
    (body(wire(specversion="0.3")), "application/json", "resident.form_submitted", "invalid_envelope", 400),
    (body(wire("resident.teleported", {})), "application/json", "resident.teleported", "unknown_type", 400),
    (body(wire("resident.registered", {})), "application/json", "resident.registered", "unknown_type", 400),
    (body(wire(dataschema="urn:linli:contracts:resident.form_submitted:v9")), "application/json",
     "resident.form_submitted", "unknown_version", 400),
    (body(wire(data={"row": {}})), "application/json", "resident.form_submitted", "invalid_data", 400),
    (body(wire()), "application/json", "event.proposed", "routing_key_mismatch", 400),
])
def test_each_kind_of_bad_input_has_its_own_error(raw, content_type, routing_key, code, status):
    refusal = rejected(raw, content_type, routing_key)
    assert code in refusal.codes and refusal.status == status


def test_an_envelope_without_dataschema_is_read_as_its_types_latest_version():
    for message in ({k: v for k, v in wire().items() if k != "dataschema"}, wire(dataschema=None)):
        envelope = check_body(body(message), "application/cloudevents+json", "resident.form_submitted")
        assert envelope.dataschema == registry.get("resident.form_submitted").dataschema
    other_type = wire(dataschema="urn:linli:contracts:event.proposed:v1")
    assert rejected(body(other_type)).codes == ["unknown_version"]
    no_type = {k: v for k, v in wire(type=["resident.form_submitted"]).items() if k != "dataschema"}
    assert "invalid_envelope" in rejected(body(no_type)).codes


def test_text_that_cannot_be_stored_is_refused_naming_its_field_and_never_echoed():
    message = wire(data={**RESIDENT_FORM_SUBMITTED.example, "row": {"姓名": "bad \ud800 x", "\udfff": "x"}})
    refusal = rejected(json.dumps(message).encode())  # ASCII JSON: the surrogates as \ud800 escapes
    assert refusal.codes == ["invalid_row"] and refusal.status == 400  # a row's cells: invalid_row, as any bad cell
    assert [e["field"] for e in refusal.errors] == ["data.row.姓名", "data.row.\\udfff"]
    json.dumps(refusal.errors, ensure_ascii=False).encode()  # the reasons can travel in headers


def test_every_error_is_named_not_only_the_first():
    message = wire(data={"row": {}, "form_reference": 7})
    del message["time"]
    refusal = rejected(body(message), "text/plain", "event.proposed")
    fields = {(e["code"], e["field"]) for e in refusal.errors}
    assert {("unsupported_content_type", None), ("invalid_envelope", "time"), ("routing_key_mismatch", "type"),
            ("invalid_data", "data.community_id"), ("invalid_data", "data.row"),
            ("invalid_data", "data.form_reference")} <= fields
    assert refusal.status == 415


def test_the_refusal_text_names_codes_and_fields_never_what_the_sender_wrote():
    row = {"姓名": "王秀英", "居住类型": "户籍", "国籍": "CN", "出生日期": "1952-13-14"}
    with pytest.raises(IngestRejected) as raised:
        row_command("tongzilin", row)
    assert "1952" not in str(raised.value) and "王秀英" not in str(raised.value)
    assert str(raised.value) == "invalid_row (data.row.出生日期)"


def test_flatten_gives_field_paths():
    messages = {"row": {"姓名": {"value": ["Longer than maximum length 500."]}}, "_schema": ["bad"]}
    assert list(flatten(messages)) == [("row.姓名.value", "Longer than maximum length 500."), (None, "bad")]


def test_a_row_with_chinese_or_english_headers_becomes_a_registration():
    command = row_command("tongzilin", RESIDENT_FORM_SUBMITTED.example["row"])
    assert command["name"] == "王秀英" and command["gender"] == "female" and command["residence_type"] == "registered"
    assert set(command["tags"]) == {"elderly", "party_member"} and command["consent"]["sms"] is True
    english = row_command("tongzilin", {"name": "Marie Dubois", "residence_type": "foreign", "nationality": "FR",
                                        "preferred_language": "fr", "community_id": "tongzilin"})
    assert english["nationality"] == "FR" and english["community_id"] == "tongzilin"


def test_a_bad_row_names_every_bad_column():
    row = {"姓名": "王秀英", "居住类型": "火星人", "国籍": "CN", "出生日期": "2024-13-01", "鞋码": "42",
           "社区": "yulin", "name": "Wang"}
    with pytest.raises(IngestRejected) as raised:
        row_command("tongzilin", row)
    found = {(e["code"], e["field"]) for e in raised.value.errors}
    assert found == {("unknown_column", "data.row.鞋码"), ("repeated_column", "data.row.name"),
                     ("community_mismatch", "data.row.社区"), ("invalid_row", "data.row.居住类型"),
                     ("invalid_row", "data.row.出生日期")}


def test_a_proposal_becomes_a_create_event_command_or_names_its_broken_rules():
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    command = proposal_command(EVENT_PROPOSED.load(EVENT_PROPOSED.example), now)
    assert command["starts_at"].utcoffset() == timedelta(hours=8) and command["audience"] == "any_community"
    with pytest.raises(IngestRejected) as raised:
        proposal_command({**EVENT_PROPOSED.example, "organiser": "mayor", "category": "karaoke"}, now)
    assert {e["field"] for e in raised.value.errors} == {"data.organiser", "data.category"}
    with pytest.raises(IngestRejected) as raised:  # rules across fields are checked once the fields are valid
        proposal_command({**EVENT_PROPOSED.example, "ends_at": "2026-12-12T09:00:00+08:00"}, now)
    assert {e["field"] for e in raised.value.errors} == {"data.ends_at"}
    with pytest.raises(IngestRejected, match="event_in_the_past"):
        proposal_command(EVENT_PROPOSED.example, datetime(2027, 1, 1, tzinfo=timezone.utc))


def test_ingest_types_are_registered_and_marked():
    assert INGEST_TYPES == {"resident.form_submitted", "event.proposed"}
    assert all((name, 1) in registry for name in INGEST_TYPES | {"ingest.accepted"})


def test_the_publisher_refuses_before_any_io():
    publisher = Publisher("amqp://nobody@127.0.0.1:1/none", "grid-system/tongzilin")  # never connects here
    with pytest.raises(InvalidPayload) as raised:
        publisher.envelope("event.proposed", {**EVENT_PROPOSED.example, "capacity": 0, "starts_at": "soon"})
    assert set(raised.value.errors) == {"capacity", "starts_at"}
    with pytest.raises(NotAnIngestType):
        publisher.envelope("resident.registered", {})
    with pytest.raises(MessageTooLarge):
        publisher.publish("resident.form_submitted", {"community_id": "tongzilin",
                                                      "row": {f"{'列' * 60}{i:02d}": "字" * 500 for i in range(40)}})


def test_a_feed_message_keeps_and_checks_its_personal_block():
    from contracts import RESIDENT_REGISTERED, build_envelope

    message = build_envelope("resident.registered", RESIDENT_REGISTERED.example, source="linli/residents").to_wire()
    message["data"]["personal"] = {"resident_id": "r1", "document_number": "E12345678", "birth_date": "1986-04-12"}
    envelope = parse_feed_message(json.dumps(message))
    assert envelope.data["personal"]["birth_date"].year == 1986 and envelope.data["nationality"] == "FR"
    unknown = parse_feed_message(json.dumps({**message, "type": "resident.teleported"}))
    assert unknown.known is False
