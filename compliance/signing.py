"""Ed25519 signing of audit checkpoints, with a key from AUDIT_SIGNING_KEY (never from the database)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.exceptions import ImproperlyConfigured


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def generate_signing_key() -> str:
    """A new AUDIT_SIGNING_KEY value (urlsafe base64 of a raw 32-byte Ed25519 private key)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return _b64encode(raw)


def private_key(value: str) -> Ed25519PrivateKey:
    try:
        raw = _b64decode(value.strip())
        if len(raw) != 32:
            raise ValueError(f"{len(raw)} bytes, not 32")
        return Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"AUDIT_SIGNING_KEY is not an Ed25519 key in urlsafe base64: {exc}") from None


def public_key_text(key: Ed25519PrivateKey) -> str:
    return _b64encode(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_key(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_b64decode(value.strip()))


def key_fingerprint(public_text: str) -> str:
    """A short name of a public key, stored with each checkpoint."""
    return hashlib.sha256(_b64decode(public_text)).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return _b64encode(key.sign(message))


def verify(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(_b64decode(signature), message)
    except Exception:
        return False
    return True
