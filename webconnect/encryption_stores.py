"""Where encrypted values live, as `encryption.EncryptedStore`s: database columns and the Redis channel history.

Rotation commits one batch at a time and changes a value only if it is still
the one it read (a conditional UPDATE, a Redis script that keeps entries it was
not given), so it can be killed at any point and run again: what was done stays
done, and every value is readable throughout (under the old key or the new).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Substr

from webconnect import encryption
from webconnect.encryption import KeyRing
from webconnect.realtime.history import stream_key_pattern


def _header(key_id: str) -> bytes:
    return encryption.MAGIC + key_id.encode("ascii").ljust(encryption.KEY_ID_BYTES, b"\0")


class BinaryColumn:
    """A BinaryField holding binary envelopes (or plaintext from before encryption was on)."""

    def __init__(self, model: type[models.Model], field: str) -> None:
        self.model = model
        self.field = field
        self.name = f"{model._meta.label}.{field}"

    def _head(self) -> Substr:
        return Substr(self.field, 1, len(encryption.MAGIC) + encryption.KEY_ID_BYTES, output_field=models.BinaryField())

    def key_ids(self) -> set[str | None]:
        # Only the fixed-size header is read, in the database (SUBSTR), never the whole value.
        heads = (
            self.model._default_manager.exclude(**{self.field: b""})
            .annotate(_wc_head=self._head())
            .values_list("_wc_head", flat=True)
            .distinct()
        )
        found: set[str | None] = set()
        for head in heads:
            found.add(encryption.key_id_of(bytes(head)) if bytes(head).startswith(encryption.MAGIC) else None)
        return found

    def rotate(self, *, batch_size: int, ring: KeyRing) -> Iterator[int]:
        assert ring.primary is not None
        pending = (
            self.model._default_manager.exclude(**{self.field: b""})
            .annotate(_wc_head=self._head())
            .exclude(_wc_head=_header(ring.primary))
        )
        yield from _reseal_in_batches(
            pending, self.field, batch_size, lambda old: encryption.encrypt(encryption.decrypt(bytes(old), ring), ring)
        )


class TextColumn:
    """A CharField/TextField holding text envelopes; small tables (OAuth applications), read whole."""

    def __init__(self, model: type[models.Model], field: str, *, only: dict[str, Any] | None = None) -> None:
        self.model = model
        self.field = field
        self.only = only or {}
        self.name = f"{model._meta.label}.{field}"

    def _values(self) -> Any:
        return self.model._default_manager.filter(**self.only).exclude(**{self.field: ""})

    def key_ids(self) -> set[str | None]:
        return {encryption.key_id_of(str(value)) for value in self._values().values_list(self.field, flat=True)}

    def rotate(self, *, batch_size: int, ring: KeyRing) -> Iterator[int]:
        def reseal(old: Any) -> Any:
            if not encryption.needs_rotation(str(old), ring):
                return None
            return encryption.encrypt_text(encryption.decrypt_text(str(old), ring), ring)

        yield from _reseal_in_batches(self._values(), self.field, batch_size, reseal)


def _reseal_in_batches(pending: Any, field: str, batch_size: int, reseal: Callable[[Any], Any]) -> Iterator[int]:
    """Walk `pending` by primary key, a batch per transaction; a row changes only if it still holds what was read."""
    manager = pending.model._default_manager
    last_pk: Any = None
    while True:
        page = pending if last_pk is None else pending.filter(pk__gt=last_pk)
        rows = list(page.order_by("pk").values_list("pk", field)[:batch_size])
        if not rows:
            return
        changed = 0
        with transaction.atomic():
            for pk, value in rows:
                new = reseal(value)
                if new is not None:
                    changed += manager.filter(pk=pk, **{field: value}).update(**{field: new})
        last_pk = rows[-1][0]
        yield changed


# Rewrites one stream with the given entries re-sealed, atomically: entries are immutable in a
# stream, so it is emptied and refilled with the same ids (and TTL). Entries published since
# Python read them, or not named, are put back as they were.
_RESEAL_LUA = """
local ttl = redis.call('PTTL', KEYS[1])
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
if #entries == 0 then return 0 end
local sealed = {}
for i = 1, #ARGV, 2 do sealed[ARGV[i]] = ARGV[i + 1] end
redis.call('DEL', KEYS[1])
local changed = 0
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  if sealed[id] then
    redis.call('XADD', KEYS[1], id, 'c', sealed[id])
    changed = changed + 1
  else
    redis.call('XADD', KEYS[1], id, unpack(fields))
  end
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return changed
"""


_OFFSET_EPOCH = re.compile(r'(?<="offset":)\d+,"epoch":"[^"]*"')


class RedisHistoryStreams:
    """The channel history streams on REDIS_URL (entries `m` in the clear, `c` sealed; see realtime.history)."""

    name = "realtime channel history (Redis streams)"

    def __init__(self) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None
        self.pattern = stream_key_pattern(settings.REALTIME_REDIS_PREFIX)

    def _streams(self) -> Iterator[bytes]:
        if self.client is None:
            return
        yield from self.client.scan_iter(match=self.pattern, count=500, _type="STREAM")

    @staticmethod
    def _key_id(fields: dict[bytes, bytes]) -> str | None:
        sealed = fields.get(b"c")
        return encryption.key_id_of(sealed.decode()) if sealed is not None else None

    def key_ids(self) -> set[str | None]:
        found: set[str | None] = set()
        for key in self._streams():
            # The oldest entry of each stream: the one most likely under an old key.
            for _, fields in self.client.xrange(key, min="-", max="+", count=1):
                found.add(self._key_id(fields))
        return found

    def rotate(self, *, batch_size: int, ring: KeyRing) -> Iterator[int]:
        if self.client is None:
            return
        reseal = self.client.register_script(_RESEAL_LUA)
        for key in self._streams():
            args: list[bytes | str] = []
            for entry_id, fields in self.client.xrange(key, min="-", max="+"):
                if self._key_id(fields) == ring.primary:
                    continue
                sealed = fields.get(b"c")
                if sealed is not None:
                    plain = encryption.decrypt_text(sealed.decode(), ring)
                else:
                    # A frame stored in the clear: cut its offset and epoch out (prefix NUL suffix, history.append).
                    text = fields[b"m"].decode()
                    found = _OFFSET_EPOCH.search(text)
                    if found is None:
                        continue
                    plain = text[: found.start()] + "\0" + text[found.end() :]
                args += [entry_id, encryption.encrypt_text(plain, ring)]
            if args:
                yield int(reseal(keys=[key], args=args))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
