from datetime import date

import pytest
from marshmallow import ValidationError

from services.residents import domain
from services.residents.domain import RegisterResident, UpdateResident, is_language_tag

VALID = {
    "community_id": "tongzilin",
    "name": "Marie Dubois",
    "residence_type": "foreign",
    "nationality": "FR",
    "preferred_language": "en",
    "birth_date": "1986-04-12",
    "document_type": "passport",
    "document_number": "E12345678",
    "permit_type": "residence_permit_work",
    "permit_expires_on": "2027-03-01",
}


def test_a_valid_resident_loads_with_defaults():
    command = RegisterResident().load(VALID)
    assert command["birth_date"] == date(1986, 4, 12) and command["gender"] == "unspecified"
    assert command["consent"] == {"inapp": True, "sms": False, "email": False}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"nationality": "XX"}, "nationality"),
        ({"preferred_language": "klingon!"}, "preferred_language"),
        ({"residence_type": "tourist"}, "residence_type"),
        ({"birth_date": "2024-13-01"}, "birth_date"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"nationality": "CN"}, "nationality"),
        ({"residence_type": "registered", "permit_type": None, "permit_expires_on": None}, "residence_type"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"document_number": None}, "document_number"),
        ({"permit_type": None}, "permit_type"),
        ({"email": "not-an-address"}, "email"),
        ({"consent": {"pigeon": True}}, "consent"),
        ({"favourite_colour": "red"}, "favourite_colour"),
    ],
)
def test_each_bad_field_is_named(change, field):
    with pytest.raises(ValidationError) as raised:
        RegisterResident().load({**VALID, **change})
    assert field in raised.value.messages


def test_only_foreign_residents_hold_permits():
    with pytest.raises(ValidationError, match="only foreign"):
        RegisterResident().load({**VALID, "residence_type": "registered", "nationality": "CN"})


@pytest.mark.parametrize("name", ["王秀英", "Анна Смирнова", "김민준", "محمد علي", "Zoë O'Brien-Łukasiewicz", "佐藤 花子"])
def test_names_in_any_script_are_accepted(name):
    assert RegisterResident().load({**VALID, "name": name})["name"] == name


def test_an_update_is_partial_and_refuses_unknown_fields():
    assert UpdateResident().load({"phone": "13800001111"}) == {"phone": "13800001111"}
    with pytest.raises(ValidationError) as raised:
        UpdateResident().load({"community_id": "yulin"})  # moving is its own command
    assert "community_id" in raised.value.messages


@pytest.mark.parametrize("tag, ok", [("zh-CN", True), ("en", True), ("fr", True), ("ko-KR", True), ("x", False), ("en_US", False)])
def test_language_tags(tag, ok):
    assert is_language_tag(tag) is ok


@pytest.mark.parametrize(
    "name, romanised",
    [("王秀英", "wang xiuying"), ("欧阳", "ou yang"), ("Marie  Dubois", "marie dubois"), ("김민준", "김민준")],
)
def test_romanise(name, romanised):
    assert domain.romanise(name) == romanised


@pytest.mark.parametrize(
    "days_left, threshold",
    [(31, None), (30, 30), (29, 30), (8, 30), (7, 7), (5, 7), (2, 7), (1, 1), (0, 1), (-1, None)],
)
def test_permit_thresholds(days_left, threshold):
    today = date(2026, 11, 26)
    assert domain.permit_threshold(date.fromordinal(today.toordinal() + days_left), today) == threshold


def test_messages_carry_no_personal_data():
    command = RegisterResident().load({**VALID, "phone": "+86 138 0000 0000"})
    facts = domain.facts("r1", command)
    assert facts["birth_year"] == 1986
    assert not {"name", "phone", "birth_date", "document_number", "email"} & set(facts)
    update = domain.update_facts("r1", "tongzilin", {"phone": "1", "name": "x", "tags": ["b", "a"]})
    assert update == {"resident_id": "r1", "community_id": "tongzilin", "changed_fields": ["name", "phone", "tags"],
                      "tags": ["a", "b"]}


def test_contact_purposes_never_hand_out_document_numbers():
    for purpose, fields in domain.CONTACT_PURPOSES.items():
        assert "document_number" not in fields, purpose


def marie(status="active", community="tongzilin", rule="same document", erased=False, resident_id="a1"):
    return domain.Match(resident_id, community, status, rule, erased)


@pytest.mark.parametrize("matches, verdict, existing_id, previous_id", [
    ([], "new", None, None),
    ([marie()], "already_registered", "a1", None),  # (a) active in the same community
    ([marie(community="yulin")], "registered_elsewhere", "a1", None),  # (b) active in another
    ([marie(status="departed")], "new", None, "a1"),  # (c) departed: registers again, linked
    ([marie(status="departed", resident_id="a1"), marie(status="departed", resident_id="b2")], "new", None, "b2"),
    ([marie(erased=True)], "new", None, None),  # (d) erased: nothing left to match
    ([marie(status="departed", erased=True)], "new", None, None),
    ([marie(status="departed", resident_id="a1"), marie(resident_id="b2")], "already_registered", "b2", None),
    ([marie(community="yulin", resident_id="a1"), marie(rule="same name, birth date and phone", resident_id="b2")],
     "already_registered", "b2", None),  # the one here is who they are registered as
])
def test_the_same_person_rule(matches, verdict, existing_id, previous_id):
    found = domain.same_person("tongzilin", matches)
    assert (found.verdict, found.existing_id, found.previous_id) == (verdict, existing_id, previous_id)


def test_the_same_person_verdicts_say_what_to_do():
    elsewhere = domain.same_person("tongzilin", [marie(community="yulin")])
    assert elsewhere.details == {"existing_id": "a1", "rule": "same document", "community_id": "yulin"}
    assert "community yulin" in elsewhere.message and "POST /residents/a1/move" in elsewhere.message
    here = domain.same_person("tongzilin", [marie()])
    assert here.details == {"existing_id": "a1", "rule": "same document"} and "a1" in here.message
