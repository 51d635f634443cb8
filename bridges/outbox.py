"""The outage buffer between a stored publish and the brokers: one Redis stream per target.

A web process appends a message here (publish listener, before the publish is acknowledged) and the
bridge runner (`manage.py runbridges`) deletes it only once the broker confirmed it, so a broker outage
or a runner restart delays messages and loses none. Each stream holds at most BRIDGES_OUTBOX_MAX
entries: beyond that a message is not queued for that target and the drop is counted (Redis key
`dropped:<target>`, on /metrics and the Operations dashboard) and logged, never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from bridges import metrics
from bridges.selectors import asnapshot
from bridges.store import configured_targets, dropped_key, message_id, redis_client, stream_key
from webconnect.realtime import protocol
from webconnect.realtime.hub import Published

logger = logging.getLogger(__name__)

# XLEN, then XADD or count the drop: one round trip, and two web processes cannot both squeeze past the bound.
_APPEND_LUA = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('INCR', KEYS[2])
  return 0
end
redis.call('XADD', KEYS[1], '*', 'c', ARGV[2], 'id', ARGV[3], 'm', ARGV[4])
return 1
"""


async def on_published(message: Published) -> None:
    """The hub's publish listener: queue the message for every bridge of its namespace."""
    configured = configured_targets()
    if not configured:
        return
    snapshot = await asnapshot()
    targets = [
        t for t in snapshot.mirror_targets(message.namespace.name, message.sender.get("user_id")) if t in configured
    ]
    if not targets:
        return
    client = redis_client()
    mid = message_id(message.position.epoch, message.position.offset)
    for target in targets:
        try:
            queued = await client.eval(
                _APPEND_LUA, 2, stream_key(target), dropped_key(target), settings.BRIDGES_OUTBOX_MAX,
                message.channel, mid, message.text,
            )  # fmt: skip
        except Exception:
            metrics.OUTBOX_ERRORS.labels(target).inc()
            logger.exception("bridges: message %s of %s not queued for %s (Redis)", mid, message.channel, target)
            continue
        if not queued:
            logger.warning(
                "bridges: %s outbox full (%d): message %s of %s not mirrored",
                target, settings.BRIDGES_OUTBOX_MAX, mid, message.channel,
            )  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One queued message: the stream entry id and what the brokers receive."""

    entry_id: bytes
    channel: str
    message_id: str
    frame: dict[str, Any]

    @property
    def namespace(self) -> str:
        return protocol.namespace_of(self.channel)

    def body(self) -> bytes:
        """The payload as JSON (a base64 payload as its JSON object: {"data": ...})."""
        return protocol.dumps(self.frame.get("payload")).encode()

    def headers(self) -> dict[str, Any]:
        header = self.frame.get("header", {})
        sender = header.get("from") or {}
        return {
            "channel": self.channel,
            "offset": header.get("offset"),
            "epoch": header.get("epoch"),
            "ts": header.get("ts"),
            "from_user_id": sender.get("user_id"),
            "encoding": header.get("encoding", "json"),
        }


class Outbox:
    """The runner's side of one target's stream."""

    def __init__(self, client: Any, target: str) -> None:
        self.client = client
        self.target = target
        self.key = stream_key(target)

    async def read(self, count: int, *, block_ms: int) -> list[Entry]:
        """The oldest `count` entries, waiting up to `block_ms` for one when there are none.

        Confirmed entries are deleted, so everything after id 0-0 is what is still owed.
        """
        answer = await self.client.xread({self.key: "0-0"}, count=count, block=block_ms)
        rows = answer[0][1] if answer else []
        return [self._entry(entry_id, fields) for entry_id, fields in rows]

    def _entry(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
        return Entry(entry_id, fields[b"c"].decode(), fields[b"id"].decode(), protocol.loads(fields[b"m"].decode()))

    async def done(self, entries: list[Entry]) -> None:
        if entries:
            await self.client.xdel(self.key, *(entry.entry_id for entry in entries))
