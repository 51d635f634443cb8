"""Key rotation: move every encrypted value (and any plaintext from before encryption) to the newest key."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from webconnect import encryption


@dataclass
class RotationResult:
    changed: int = 0
    batches: int = 0
    per_store: dict[str, int] = field(default_factory=dict)


def pause_between_batches() -> None:
    """JOB_BATCH_PAUSE_MS between batches, as the jobs do, to spare a busy database."""
    if settings.JOB_BATCH_PAUSE_MS:
        time.sleep(settings.JOB_BATCH_PAUSE_MS / 1000)


def keys_rotate(*, batch_size: int, after_batch: Callable[[], None] = pause_between_batches) -> RotationResult:
    """Re-encrypt, store by store, one committed batch at a time; safe to kill and run again.

    A value is rewritten only if it is still the one read, so writers going on meanwhile
    (new values are already under the newest key) never lose anything.
    """
    ring = encryption.key_ring()
    if not ring.enabled:
        raise ValueError(f"{encryption.SETTING} is not set: there is no key to rotate to")
    result = RotationResult()
    for store in encryption.stores():
        done = 0
        try:
            for changed in store.rotate(batch_size=batch_size, ring=ring):
                done += changed
                result.batches += 1
                after_batch()
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
        result.per_store[store.name] = done
        result.changed += done
    return result


def keys_in_use() -> dict[str, list[str]]:
    """Per store, the key ids its values are under ("plaintext" for values from before encryption)."""
    found: dict[str, list[str]] = {}
    for store in encryption.stores():
        try:
            ids = store.key_ids()
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
        found[store.name] = sorted(key_id or "plaintext" for key_id in ids)
    return found
