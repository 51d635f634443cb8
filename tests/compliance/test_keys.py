"""The key ring: what ENCRYPTION_KEYS accepts, sealing and opening, and the start-up check of key ids."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from collab import services
from tests.compliance.helpers import new_keys
from tests.conftest import ROOT
from webconnect import encryption


def test_a_sealed_value_opens_with_its_key_and_names_it() -> None:
    ring = encryption.parse_key_ring(new_keys("new", "old"))
    sealed = encryption.encrypt(b"hello", ring)
    assert b"hello" not in sealed and encryption.key_id_of(sealed) == "new"
    assert encryption.decrypt(sealed, ring) == b"hello"
    text = encryption.encrypt_text("hello", ring)
    assert text.startswith("wce1:new:") and encryption.decrypt_text(text, ring) == "hello"
    # Values from before encryption pass through; rotation picks them up.
    assert encryption.decrypt(b"plain", ring) == b"plain" and encryption.needs_rotation(b"plain", ring)


def test_a_value_under_a_removed_key_says_which_key_is_missing() -> None:
    sealed = encryption.encrypt(b"x", encryption.parse_key_ring(new_keys("gone")))
    with pytest.raises(encryption.UnknownKeyError, match=r"key id 'gone'.*ENCRYPTION_KEYS"):
        encryption.decrypt(sealed, encryption.parse_key_ring(new_keys("other")))


def test_an_altered_value_is_refused() -> None:
    ring = encryption.parse_key_ring(new_keys("k1"))
    sealed = bytearray(encryption.encrypt(b"hello", ring))
    sealed[-1] ^= 1
    with pytest.raises(encryption.DecryptionError):
        encryption.decrypt(bytes(sealed), ring)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1", "id:key"),
        ("k 1:AAAA", "id:key"),
        ("k1:not*base64", "not urlsafe base64"),
        ("k1:AAAA", "3 bytes, not 32"),
        (f"k1:{encryption.generate_key()},k1:{encryption.generate_key()}", "appears twice"),
    ],
)
def test_a_malformed_key_ring_is_refused_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"ENCRYPTION_KEYS.*{message}"):
        encryption.parse_key_ring(value)


def manage_env(database_name: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "WEBCONNECT_TEST_DATABASE_NAME": database_name}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return {**env, **extra}


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_start_up_stops_on_a_malformed_key_ring() -> None:
    result = manage("check", env=manage_env("unused", ENCRYPTION_KEYS="k1:c2hvcnQ"))
    assert result.returncode != 0 and "ENCRYPTION_KEYS" in result.stderr and "5 bytes, not 32" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_start_up_stops_when_a_stored_key_id_has_no_key(alice: Any) -> None:
    from django.db import connection

    old = new_keys("old")
    with override_settings(ENCRYPTION_KEYS=old):
        services.document_create(owner=alice, title="Sealed", initial=lambda fragment: None)
        document = services.document_create(owner=alice, title="Sealed")
        services.document_append_updates(document_id=document.pk, updates=[(b"\x00\x00", alice.pk)])
    env = manage_env(str(connection.settings_dict["NAME"]), ENCRYPTION_KEYS=new_keys("new"))
    refused = manage("serve", "--port", "1", env=env)  # what a server start runs: the system checks first
    assert refused.returncode != 0
    assert "compliance.E001" in refused.stderr and "key id(s) old" in refused.stderr, refused.stderr
    assert "rotate_keys" in refused.stderr
    accepted = manage("check", env={**env, "ENCRYPTION_KEYS": new_keys("new") + "," + old})
    assert accepted.returncode == 0, accepted.stderr
