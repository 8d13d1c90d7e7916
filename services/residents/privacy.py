"""Personal data at rest: document numbers encrypted, found by a keyed hash, masked on read.

Pure Python over the ``cryptography`` package; the keys come from config
(``RESIDENTS_DATA_KEY``: a Fernet key; the lookup key is derived from it).
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

PII_SCOPE = "residents:pii"


class Vault:
    def __init__(self, data_key: str):
        if not data_key:
            raise ValueError("RESIDENTS_DATA_KEY is empty: document numbers cannot be protected")
        key_bytes = data_key.encode()
        self._fernet = Fernet(key_bytes)
        # A separate key for lookups, so the hash reveals nothing about the cipher key.
        self._lookup_key = hashlib.sha256(b"linli-residents-lookup:" + base64.urlsafe_b64decode(key_bytes)).digest()

    def encrypt(self, plaintext: str | None) -> str | None:
        if plaintext is None:
            return None
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str | None) -> str | None:
        if ciphertext is None:
            return None
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError("a stored document number cannot be decrypted with this key") from None

    def lookup_hash(self, *parts: str) -> str:
        """A keyed hash of normalised ``parts``: equal inputs, equal hashes; no way back."""
        normalised = "\x1f".join(" ".join(str(p).split()).upper() for p in parts)
        return hmac.new(self._lookup_key, normalised.encode(), hashlib.sha256).hexdigest()


def mask(value: str | None) -> str | None:
    """``E12345678`` -> ``E1234****78``: enough to recognise, not enough to use."""
    if not value:
        return value
    if len(value) <= 6:
        return "*" * len(value)
    return f"{value[:5]}****{value[-2:]}"


def new_data_key() -> str:
    return Fernet.generate_key().decode()
