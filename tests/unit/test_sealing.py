"""Personal fields sealed for one reader (services/common/sealing.py): only its private key opens them."""
import json

import pytest

from services.common.sealing import SealingError, SealForReader, new_private_key, open_sealed, public_key_of, seal

CONTACT = {"phone": "+33 6 12 34 56 78", "email": "marie@example.fr", "consent": {"email": True}}


def test_what_is_sealed_for_a_reader_only_that_reader_opens():
    reader, other = new_private_key(), new_private_key()
    reply = {"resident_id": "r1", "reachable": True, "sealed": seal(CONTACT, public_key_of(reader))}
    assert "marie" not in json.dumps(reply) and "+33" not in json.dumps(reply)
    assert open_sealed(reply, reader) == {"resident_id": "r1", "reachable": True, **CONTACT}
    with pytest.raises(SealingError, match="cannot open"):
        open_sealed(reply, other)


def test_a_reply_without_a_sealed_part_is_read_as_it_is_and_a_missing_key_is_an_error():
    assert open_sealed({"resident_id": "r1", "reachable": False}, "") == {"resident_id": "r1", "reachable": False}
    sealed = {"sealed": seal(CONTACT, public_key_of(new_private_key()))}
    with pytest.raises(SealingError, match="no private key"):
        open_sealed(sealed, "")
    with pytest.raises(SealingError, match="not a public key"):
        seal(CONTACT, "not-a-key")


class _Container:
    def __init__(self, config):
        self.config = config


def test_the_sealer_seals_for_the_reader_the_purpose_names_and_refuses_a_purpose_without_one():
    reader = new_private_key()
    container = _Container({"PERSONAL_DATA_READERS": {"notify": "notifications"},
                            "READER_PUBLIC_KEYS": {"notifications": public_key_of(reader)}})
    sealer = SealForReader().bind(container, "seal_for")  # nameko keeps only a weak reference to it
    sealer.setup()
    sealed = sealer.seal_for("notify", CONTACT)
    assert sealed["sealed_for"] == "notifications" and open_sealed(sealed, reader) == CONTACT
    with pytest.raises(SealingError, match="permit_assistance"):
        sealer.seal_for("permit_assistance", CONTACT)  # no reader configured: nothing goes out in plaintext
