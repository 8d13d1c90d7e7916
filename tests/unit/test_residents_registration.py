"""Registering a resident, and the same-person rule at registration, against an in-memory store and
outbox (``tests/unit/fakes/residents_store.py``): no broker, no database."""
from datetime import date

import pytest
from bson import ObjectId

from contracts import RESIDENT_REGISTERED
from services.common.messaging import fact_id
from services.residents import domain, identity, registry
from services.residents.privacy import Vault, new_data_key
from tests.unit.fakes.residents_store import FakeOutbox, FakeResidentsStore

VAULT = Vault(new_data_key())
MARIE = {"community_id": "tongzilin", "name": "Marie Dubois", "birth_date": date(1988, 5, 3), "phone": "13800000001",
         "residence_type": "foreign", "nationality": "FR", "preferred_language": "fr", "gender": "female",
         "tags": [], "consent": {"inapp": True}, "document_type": "passport", "document_number": "P1234567"}
SAME_DOCUMENT = domain.IDENTITY_RULES["document_key"]
SAME_NAME_BIRTH_PHONE = domain.IDENTITY_RULES["person_key"]


@pytest.fixture
def store():
    return FakeResidentsStore()


@pytest.fixture
def outbox(store):
    return FakeOutbox(store)


def register(store, outbox, **changes):
    return registry.register(store, VAULT, outbox, {**MARIE, **changes})


def refusal(store, outbox, **changes) -> identity.SamePersonConflict:
    published, stored = list(outbox.published), dict(store.records)
    with pytest.raises(identity.SamePersonConflict) as refused:
        register(store, outbox, **changes)
    assert outbox.published == published and store.records == stored  # nothing stored, nothing announced
    return refused.value


def test_a_resident_is_stored_and_announced_once_with_no_document_number_in_clear(store, outbox):
    resident_id = register(store, outbox)
    [record] = store.records.values()
    assert str(record["_id"]) == resident_id and record["status"] == "active"
    assert "document_number" not in record and VAULT.decrypt(record["document_cipher"]) == "P1234567"
    assert record["document_key"] and record["person_key"]
    [(message_type, data, kwargs)] = outbox.published
    assert message_type is RESIDENT_REGISTERED
    assert data == domain.facts(resident_id, record) and data["resident_id"] == resident_id
    assert kwargs == {"subject": resident_id, "community": "tongzilin",
                      "message_id": fact_id("resident.registered", resident_id)}
    assert not {"name", "phone", "birth_date", "document_number", "document_cipher"} & set(data)


def test_the_same_document_in_the_same_community_is_already_registered(store, outbox):
    first = register(store, outbox)
    refused = refusal(store, outbox, name="Marie-Claire Dubois", phone="13900000000")
    assert (refused.code, refused.existing_id, refused.verdict.rule) == ("already_registered", first, SAME_DOCUMENT)
    assert refused.status == 409


def test_the_same_document_in_another_community_is_a_move_not_a_registration(store, outbox):
    first = register(store, outbox)
    refused = refusal(store, outbox, community_id="yulin")
    assert (refused.code, refused.existing_id, refused.verdict.community_id) == ("registered_elsewhere", first,
                                                                                 "tongzilin")
    hidden = refused.seen_from(lambda community: community == "yulin")  # a token that does not reach tongzilin
    assert hidden.existing_id is None and "tongzilin" not in hidden.verdict.message


def test_the_same_name_birth_date_and_phone_without_a_document_is_the_same_person_in_one_community(store, outbox):
    first = register(store, outbox, document_type=None, document_number=None)
    refused = refusal(store, outbox, document_type=None, document_number=None, phone="138-0000-0001")
    assert (refused.code, refused.existing_id, refused.verdict.rule) == ("already_registered", first,
                                                                         SAME_NAME_BIRTH_PHONE)
    # Another birth date is another person; so is the same name elsewhere (the key hashes the community in).
    assert register(store, outbox, document_type=None, document_number=None, birth_date=date(1990, 1, 1))
    assert register(store, outbox, document_type=None, document_number=None, community_id="yulin")
    assert len(store.records) == 3


def test_a_document_match_outranks_a_name_birth_date_and_phone_match(store, outbox):
    by_person = register(store, outbox, document_type=None, document_number=None)
    by_document = register(store, outbox, phone="13900000009")
    refused = refusal(store, outbox)  # her document is one's, her name, birth date and phone the other's
    assert (refused.code, refused.existing_id, refused.verdict.rule) == ("already_registered", by_document,
                                                                         SAME_DOCUMENT)
    assert by_person != by_document


def test_a_departed_resident_who_returns_registers_again_linked_to_the_earlier_record(store, outbox):
    earlier = register(store, outbox)
    registry.depart(store, outbox, registry.find(store, earlier), {"reason": "moved_away",
                                                                    "departed_on": date(2026, 1, 5)})
    again = register(store, outbox, community_id="yulin")
    assert again != earlier and store.records[_oid(again)]["previous_id"] == earlier
    assert refusal(store, outbox).existing_id == again  # and now the returned one is the active one


def test_an_erased_resident_leaves_nothing_to_match(store, outbox):
    earlier = register(store, outbox)
    registry.erase(store, outbox, registry.find(store, earlier))
    again = register(store, outbox)
    assert again != earlier and "previous_id" not in store.records[_oid(again)]


def test_someone_registered_between_the_look_up_and_the_insert_is_refused_as_the_rule_says(store, outbox):
    other = {}

    def registered_meanwhile():  # another worker's registration of the same person commits first
        other["id"] = registry.register(store, VAULT, FakeOutbox(store), dict(MARIE))

    store.meanwhile = registered_meanwhile
    with pytest.raises(identity.SamePersonConflict) as raised:
        register(store, outbox)
    assert (raised.value.code, raised.value.existing_id) == ("already_registered", other["id"])
    assert list(map(str, store.records)) == [other["id"]] and outbox.published == []


def test_a_person_twice_in_one_batch_is_judged_against_the_first_admitted(store):
    records = [registry.to_record(VAULT, {**MARIE}), registry.to_record(VAULT, {**MARIE, "community_id": "yulin"}),
               registry.to_record(VAULT, {**MARIE, "name": "Wang Fang", "document_number": "E7654321",
                                          "phone": "13800000002"})]
    first, twin, other = identity.admit_many(store, records)
    assert first.is_new and other.is_new and records[0]["_id"] != records[2]["_id"]
    assert (twin.verdict, twin.existing_id) == ("registered_elsewhere", str(records[0]["_id"]))
    assert "_id" not in records[1]


def _oid(resident_id):
    return ObjectId(resident_id)
