import pytest

from services.residents.privacy import Vault, mask, new_data_key


def test_document_numbers_round_trip_and_are_not_stored_plain():
    vault = Vault(new_data_key())
    cipher = vault.encrypt("E12345678")
    assert "E12345678" not in cipher and vault.decrypt(cipher) == "E12345678"
    assert vault.encrypt(None) is None and vault.decrypt(None) is None


def test_another_key_cannot_read_it():
    cipher = Vault(new_data_key()).encrypt("E12345678")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        Vault(new_data_key()).decrypt(cipher)


def test_the_lookup_hash_is_keyed_and_normalised():
    vault = Vault(new_data_key())
    assert vault.lookup_hash("passport", "e123 45678") == vault.lookup_hash("PASSPORT", "E123  45678")
    assert vault.lookup_hash("passport", "E1") != Vault(new_data_key()).lookup_hash("passport", "E1")
    assert "E1" not in vault.lookup_hash("passport", "E1")


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="RESIDENTS_DATA_KEY"):
        Vault("")


@pytest.mark.parametrize("value, masked", [("E12345678", "E1234****78"), ("510104199001011234", "51010****34"),
                                           ("12345", "*****"), (None, None)])
def test_mask(value, masked):
    assert mask(value) == masked
