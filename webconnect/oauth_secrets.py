"""OAuth client secrets at rest: encrypted when DOT keeps them readable.

django-oauth-toolkit hashes client secrets by default (`hash_client_secret`),
which is one-way and stronger than encryption. An application that needs its
secret readable (HS256-signed ID tokens) has `hash_client_secret` off: its
secret is stored sealed (encryption.encrypt_text) and opened when the row is
loaded, so DOT's own code (the secret check, HS256 signing) sees the plaintext.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_init, post_save, pre_save
from oauth2_provider.models import get_application_model

from webconnect import encryption


def _readable(instance: Any) -> bool:
    return not getattr(instance, "hash_client_secret", True) and bool(instance.client_secret)


def _open(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _readable(instance) and instance.client_secret.startswith(encryption.TEXT_PREFIX):
        instance.client_secret = encryption.decrypt_text(instance.client_secret)


def _seal(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _readable(instance) and not instance.client_secret.startswith(encryption.TEXT_PREFIX):
        instance._wc_plain_secret = instance.client_secret
        instance.client_secret = encryption.encrypt_text(instance.client_secret)


def _reopen(sender: Any, instance: Any, **kwargs: Any) -> None:
    plain = instance.__dict__.pop("_wc_plain_secret", None)
    if plain is not None:
        instance.client_secret = plain


def connect() -> None:
    application = get_application_model()
    post_init.connect(_open, sender=application, dispatch_uid="wc-oauth-secret-open")
    pre_save.connect(_seal, sender=application, dispatch_uid="wc-oauth-secret-seal")
    post_save.connect(_reopen, sender=application, dispatch_uid="wc-oauth-secret-reopen")
