"""Start-up check: every key id a stored value names is in ENCRYPTION_KEYS (else reads would fail later)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.db import DatabaseError
from redis.exceptions import RedisError

from webconnect import encryption

logger = logging.getLogger(__name__)


@register("compliance")
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    ring = encryption.key_ring()
    errors: list[CheckMessage] = []
    for store in encryption.stores():
        try:
            in_use = store.key_ids()
        except (DatabaseError, RedisError) as exc:
            # Not migrated yet (migrate runs checks first) or a store that is down: /readyz says so.
            logger.debug("encryption check skipped %s: %s", store.name, exc)
            continue
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
        missing = sorted(key_id for key_id in in_use if key_id is not None and key_id not in ring.ciphers)
        if missing:
            errors.append(
                Error(
                    f"{store.name}: stored values are encrypted with key id(s) {', '.join(missing)}, "
                    f"which {encryption.SETTING} does not hold, so they cannot be read",
                    hint=f"Put the key(s) back in {encryption.SETTING} after the newest one, then run "
                    "`manage.py rotate_keys`; remove a key only once rotate_keys has finished.",
                    id="compliance.E001",
                )
            )
    return errors


@register("compliance")
def check_audit_signing_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from compliance import signing

    if settings.AUDIT_SIGNING_KEY:
        try:
            signing.private_key(settings.AUDIT_SIGNING_KEY)
        except ImproperlyConfigured as exc:
            return [Error(str(exc), id="compliance.E002")]
    return []
