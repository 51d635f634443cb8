"""Encryption at rest: AES-256-GCM under the key ring in ENCRYPTION_KEYS. This module owns the envelope format.

ENCRYPTION_KEYS is a comma-separated list of `id:key` pairs, newest first; a key
is 32 bytes in urlsafe base64. The first key encrypts, every key decrypts, so a
new key goes in front and the old one stays until `rotate_keys` has moved every
value off it. Unset: nothing is encrypted (values are stored as given).

Binary envelope (database blobs):
    MAGIC (4 bytes) + key id (16 bytes, ASCII, NUL-padded) + nonce (12) + ciphertext and GCM tag
Text envelope (Redis fields, character columns):
    "wce1:" + key id + ":" + urlsafe base64 (no padding) of nonce + ciphertext and tag

The key id sits at a fixed place, so a database can list the key ids in use
with SUBSTR alone. A value without the marker is plaintext written before
encryption was turned on and is returned as it is (rotate_keys encrypts it).
The MAGIC starts with 0xff: a Yjs update starts with a var-uint count, and one
starting 0xff 'w' 'c' 'e' would be a document of ~14 million clients.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

MAGIC = b"\xffwce"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
TEXT_PREFIX = "wce1:"
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
SETTING = "ENCRYPTION_KEYS"


class UnknownKeyError(Exception):
    """A stored value names a key id the ring does not hold (a key was removed too early)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"a stored value is encrypted with key id {key_id!r}, which {SETTING} does not hold: "
            f"put that key back in {SETTING} (after the newest), then run `manage.py rotate_keys`"
        )
        self.key_id = key_id


class DecryptionError(Exception):
    """The value was altered, or encrypted under another key with the same id."""


@dataclass(frozen=True)
class KeyRing:
    ids: tuple[str, ...] = ()  # newest first
    ciphers: dict[str, AESGCM] = field(default_factory=dict)

    @property
    def primary(self) -> str | None:
        return self.ids[0] if self.ids else None

    @property
    def enabled(self) -> bool:
        return bool(self.ids)


def parse_key_ring(raw: str) -> KeyRing:
    """ENCRYPTION_KEYS → KeyRing; a malformed value raises ImproperlyConfigured naming the variable."""
    ids: list[str] = []
    ciphers: dict[str, AESGCM] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not KEY_ID.match(key_id):
            raise ImproperlyConfigured(
                f"{SETTING}: each entry is id:key with an id of 1-16 letters, digits, - or _; got {key_id!r}"
            )
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{SETTING}: the key of {key_id!r} is not urlsafe base64") from None
        if len(key) != 32:
            raise ImproperlyConfigured(f"{SETTING}: the key of {key_id!r} is {len(key)} bytes, not 32")
        if key_id in ciphers:
            raise ImproperlyConfigured(f"{SETTING}: key id {key_id!r} appears twice")
        ids.append(key_id)
        ciphers[key_id] = AESGCM(key)
    return KeyRing(tuple(ids), ciphers)


def generate_key() -> str:
    """A new key in the form ENCRYPTION_KEYS takes (urlsafe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode().rstrip("=")


_cache_lock = threading.Lock()
_cache: tuple[str, KeyRing] | None = None


def key_ring() -> KeyRing:
    """The ring of the current settings (re-read when the setting changes, as tests do)."""
    global _cache
    from django.conf import settings

    raw = str(getattr(settings, SETTING, "") or "")
    cached = _cache
    if cached is not None and cached[0] == raw:
        return cached[1]
    with _cache_lock:
        ring = parse_key_ring(raw)
        _cache = (raw, ring)
    return ring


# --- Bytes --------------------------------------------------------------------------------------


def is_encrypted(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def key_id_of(data: bytes | str) -> str | None:
    """The key id a stored value is encrypted with, or None for plaintext."""
    if isinstance(data, str):
        if not data.startswith(TEXT_PREFIX):
            return None
        return data[len(TEXT_PREFIX) :].partition(":")[0]
    if not is_encrypted(data):
        return None
    return data[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES].rstrip(b"\0").decode("ascii", "replace")


def encrypt(data: bytes, ring: KeyRing | None = None) -> bytes:
    """`data` sealed under the newest key; unchanged when encryption is off."""
    ring = ring or key_ring()
    if ring.primary is None:
        return data
    nonce = os.urandom(NONCE_BYTES)
    header = MAGIC + ring.primary.encode("ascii").ljust(KEY_ID_BYTES, b"\0")
    return header + nonce + ring.ciphers[ring.primary].encrypt(nonce, data, header)


def decrypt(data: bytes, ring: KeyRing | None = None) -> bytes:
    """The plaintext of a stored value (plaintext values pass through)."""
    if not is_encrypted(data):
        return data
    ring = ring or key_ring()
    key_id = key_id_of(data) or ""
    cipher = ring.ciphers.get(key_id)
    if cipher is None:
        raise UnknownKeyError(key_id)
    header = data[: len(MAGIC) + KEY_ID_BYTES]
    try:
        return cipher.decrypt(data[len(header) : HEADER_BYTES], data[HEADER_BYTES:], header)
    except Exception as exc:
        raise DecryptionError(f"a value under key id {key_id!r} does not decrypt (altered?)") from exc


# --- Text ---------------------------------------------------------------------------------------


def encrypt_text(text: str, ring: KeyRing | None = None) -> str:
    ring = ring or key_ring()
    if ring.primary is None:
        return text
    nonce = os.urandom(NONCE_BYTES)
    aad = (TEXT_PREFIX + ring.primary).encode()
    sealed = nonce + ring.ciphers[ring.primary].encrypt(nonce, text.encode("utf-8"), aad)
    return f"{TEXT_PREFIX}{ring.primary}:{base64.urlsafe_b64encode(sealed).decode().rstrip('=')}"


def decrypt_text(text: str, ring: KeyRing | None = None) -> str:
    if not text.startswith(TEXT_PREFIX):
        return text
    ring = ring or key_ring()
    key_id, _, encoded = text[len(TEXT_PREFIX) :].partition(":")
    cipher = ring.ciphers.get(key_id)
    if cipher is None:
        raise UnknownKeyError(key_id)
    try:
        sealed = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        plain = cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], (TEXT_PREFIX + key_id).encode())
    except Exception as exc:
        raise DecryptionError(f"a value under key id {key_id!r} does not decrypt (altered?)") from exc
    return plain.decode("utf-8")


def needs_rotation(value: bytes | str, ring: KeyRing | None = None) -> bool:
    """Whether `value` is not (yet) under the newest key: plaintext or an older key."""
    ring = ring or key_ring()
    return ring.primary is not None and key_id_of(value) != ring.primary


# --- Stores: where encrypted values live, for rotation and the start-up check --------------------


class EncryptedStore(Protocol):
    """Something holding encrypted values: a database column, the Redis channel history."""

    name: str

    def key_ids(self) -> set[str | None]:
        """Key ids in use (None: plaintext values)."""
        ...

    def rotate(self, *, batch_size: int, ring: KeyRing) -> Iterator[int]:
        """Re-encrypt values not under the newest key, one committed batch per yield (how many changed)."""
        ...


_stores: dict[str, Callable[[], EncryptedStore]] = {}


def register_store(name: str, factory: Callable[[], EncryptedStore]) -> None:
    """Apps register what they encrypt (in AppConfig.ready()); rotate_keys and the start-up check walk them."""
    _stores[name] = factory


def stores() -> list[EncryptedStore]:
    return [factory() for _, factory in sorted(_stores.items())]
