"""Personal fields sealed for their one reader, so an RPC reply carries them only as ciphertext.

A libsodium sealed box (PyNaCl ``SealedBox``): whoever holds a reader's public key can
seal, only the reader's private key opens. The residents service holds the readers'
public keys and seals the personal part of a reply for the reader its purpose names;
any other broker user who calls the RPC or reads the reply sees ``{"sealed": ...}``.
Keys are base64 text (32 bytes each), from the services' config.
"""
from __future__ import annotations

import json

from nameko.extensions import DependencyProvider
from nacl.encoding import Base64Encoder
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

SEALED = "sealed"  # the key of the ciphertext in a reply
SEALED_FOR = "sealed_for"  # the reader's name beside it, in clear (it names a service, no person)


class SealingError(Exception):
    """No key to seal or open with, or a box this key cannot open."""


def new_private_key() -> str:
    return PrivateKey.generate().encode(Base64Encoder).decode()


def public_key_of(private_key: str) -> str:
    return _private(private_key).public_key.encode(Base64Encoder).decode()


def seal(fields: dict, public_key: str) -> str:
    """``fields`` as JSON in a sealed box for the holder of ``public_key``'s private key."""
    try:
        box = SealedBox(PublicKey(public_key.encode(), Base64Encoder))
    except (ValueError, TypeError, CryptoError) as exc:
        raise SealingError(f"not a public key: {type(exc).__name__}") from None
    return box.encrypt(json.dumps(fields).encode(), Base64Encoder).decode()


def open_sealed(reply: dict, private_key: str) -> dict:
    """The reply with its sealed part opened and merged in (a reply without one as it is)."""
    if SEALED not in reply:
        return reply
    if not private_key:
        raise SealingError("no private key is configured to open a sealed reply (PERSONAL_DATA_PRIVATE_KEY)")
    clear = {key: value for key, value in reply.items() if key not in (SEALED, SEALED_FOR)}
    try:
        opened = SealedBox(_private(private_key)).decrypt(reply[SEALED].encode(), Base64Encoder)
    except CryptoError:
        raise SealingError("this key cannot open the sealed reply (sealed for another reader?)") from None
    return {**clear, **json.loads(opened)}


def _private(private_key: str) -> PrivateKey:
    try:
        return PrivateKey(private_key.encode(), Base64Encoder)
    except (ValueError, TypeError, CryptoError) as exc:
        raise SealingError(f"not a private key: {type(exc).__name__}") from None


class SealForReader(DependencyProvider):
    """``seal_for(purpose, fields)`` -> ``{"sealed_for", "sealed"}``, for the reader the purpose names.

    Config: ``PERSONAL_DATA_READERS`` maps each purpose to its reader, ``READER_PUBLIC_KEYS`` each
    reader to its public key. A purpose without both is refused: nothing goes out in plaintext."""

    def setup(self):
        config = self.container.config
        self.readers = dict(config.get("PERSONAL_DATA_READERS") or {})
        self.public_keys = dict(config.get("READER_PUBLIC_KEYS") or {})

    def get_dependency(self, worker_ctx):
        return self.seal_for

    def seal_for(self, purpose: str, fields: dict) -> dict:
        reader = self.readers.get(purpose)
        public_key = self.public_keys.get(reader) if reader else None
        if not public_key:
            raise SealingError(f"no reader with a public key for purpose {purpose!r} "
                               "(PERSONAL_DATA_READERS, READER_PUBLIC_KEYS)")
        return {SEALED_FOR: reader, SEALED: seal(fields, public_key)}


class OpenSealed(DependencyProvider):
    """``open_sealed(reply)`` with this service's private key (config ``PERSONAL_DATA_PRIVATE_KEY``)."""

    def setup(self):
        self.private_key = self.container.config.get("PERSONAL_DATA_PRIVATE_KEY") or ""

    def get_dependency(self, worker_ctx):
        return lambda reply: open_sealed(reply, self.private_key)
