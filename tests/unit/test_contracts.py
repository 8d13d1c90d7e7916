import pytest

from contracts import (
    RESIDENT_REGISTERED,
    RESIDENT_UPDATED,
    EnvelopeError,
    InvalidPayload,
    UnknownMessageType,
    build_envelope,
    parse_envelope,
    registry,
)

PERSONAL_FIELDS = {"name", "phone", "document_number", "document_type", "birth_date", "email", "address"}


def test_every_registered_example_is_a_valid_payload():
    for message_type in registry:
        assert message_type.load(message_type.example)
        assert message_type.dump(message_type.example)


def test_no_message_type_carries_personal_data():
    for message_type in registry:
        leaked = PERSONAL_FIELDS & set(message_type.schema().fields)
        assert not leaked, f"{message_type.name} v{message_type.version} carries {leaked}"


def test_envelope_has_the_cloudevents_attributes_and_the_extensions():
    envelope = build_envelope(
        "resident.registered",
        RESIDENT_REGISTERED.example,
        source="linli/residents",
        subject="r1",
        community="tongzilin",
        correlationid="c1",
    )
    wire = envelope.to_wire()
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "resident.registered"
    assert wire["dataschema"] == "urn:linli:contracts:resident.registered:v1"
    assert wire["datacontenttype"] == "application/json"
    assert wire["community"] == "tongzilin" and wire["correlationid"] == "c1"
    assert parse_envelope(wire) == envelope


def test_building_an_unknown_type_raises():
    with pytest.raises(UnknownMessageType, match="resident.teleported"):
        build_envelope("resident.teleported", {}, source="linli/test")


def test_building_an_invalid_payload_names_the_bad_fields():
    data = {**RESIDENT_REGISTERED.example, "nationality": "France", "residence_type": None}
    with pytest.raises(InvalidPayload) as raised:
        build_envelope("resident.registered", data, source="linli/test")
    assert set(raised.value.errors) == {"nationality", "residence_type"}


def test_a_producer_cannot_add_fields_the_contract_does_not_name():
    data = {**RESIDENT_REGISTERED.example, "name": "Marie Dubois"}
    with pytest.raises(InvalidPayload, match="name"):
        build_envelope("resident.registered", data, source="linli/test")


def test_a_consumer_ignores_fields_added_by_a_newer_producer():
    wire = build_envelope("resident.updated", RESIDENT_UPDATED.example, source="linli/test").to_wire()
    wire["data"]["added_in_a_later_minor_change"] = 1
    assert "added_in_a_later_minor_change" not in parse_envelope(wire).data


@pytest.mark.parametrize(
    "mutate, bad_field",
    [
        (lambda w: w.pop("id"), "id"),
        (lambda w: w.update(specversion="0.3"), "specversion"),
        (lambda w: w.update(time="yesterday"), "time"),
        (lambda w: w.update(type="Resident Registered"), "type"),
    ],
)
def test_parsing_a_broken_envelope_names_the_attribute(mutate, bad_field):
    wire = build_envelope("resident.registered", RESIDENT_REGISTERED.example, source="linli/test").to_wire()
    mutate(wire)
    with pytest.raises(EnvelopeError) as raised:
        parse_envelope(wire)
    assert bad_field in raised.value.errors


def test_parsing_an_unknown_version_raises():
    wire = build_envelope("resident.registered", RESIDENT_REGISTERED.example, source="linli/test").to_wire()
    wire["dataschema"] = "urn:linli:contracts:resident.registered:v9"
    with pytest.raises(UnknownMessageType, match="v9"):
        parse_envelope(wire)
