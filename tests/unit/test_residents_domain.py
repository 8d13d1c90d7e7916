import pytest
from marshmallow import ValidationError

from services.residents.domain import RegisterResident, is_language_tag, registered_facts

VALID = {
    "community_id": "tongzilin",
    "name": "Marie Dubois",
    "residence_type": "foreign",
    "nationality": "FR",
    "preferred_language": "en",
    "birth_date": "1986-04-12",
}


def test_a_valid_resident_loads():
    command = RegisterResident().load(VALID)
    assert command["birth_date"].year == 1986 and command["gender"] == "unspecified"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"nationality": "XX"}, "nationality"),
        ({"preferred_language": "klingon!"}, "preferred_language"),
        ({"residence_type": "tourist"}, "residence_type"),
        ({"birth_date": "2024-13-01"}, "birth_date"),
        ({"nationality": "CN"}, "nationality"),
        ({"residence_type": "registered"}, "residence_type"),
        ({"name": ""}, "name"),
    ],
)
def test_each_bad_field_is_named(change, field):
    with pytest.raises(ValidationError) as raised:
        RegisterResident().load({**VALID, **change})
    assert field in raised.value.messages


@pytest.mark.parametrize("tag, ok", [("zh-CN", True), ("en", True), ("fr", True), ("ko-KR", True), ("x", False), ("en_US", False)])
def test_language_tags(tag, ok):
    assert is_language_tag(tag) is ok


def test_registered_facts_carry_no_personal_data():
    facts = registered_facts("r1", RegisterResident().load({**VALID, "phone": "+86 138 0000 0000"}))
    assert facts["birth_year"] == 1986
    assert not {"name", "phone", "birth_date"} & set(facts)
