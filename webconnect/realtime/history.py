"""Channel history: offsets within an epoch, bounded and expiring.

Production keeps it in Redis (a stream per channel, whose entry ids are the
offsets, so "everything after offset N" is one XRANGE); development keeps it in
this process's memory. In both, a message gets its offset where it is stored,
and an epoch names one unbroken run of offsets: when the history is lost (TTL,
Redis flushed) the epoch changes and a client's `since` can no longer be
satisfied, which is reported as `recovered: false`, never hidden.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from webconnect import encryption
from webconnect.realtime import protocol


def new_epoch() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Position:
    offset: int
    epoch: str


@dataclass(frozen=True)
class Recovery:
    """Messages after a client's position (encoded frames, in order) and whether nothing is missing."""

    messages: list[tuple[int, str]]
    recovered: bool
    position: Position


@dataclass
class _Log:
    epoch: str
    offset: int = 0
    expires_at: float = 0.0
    entries: deque[tuple[int, str]] = field(default_factory=deque)


class MemoryHistory:
    """History in this process (embedded mode: one server process)."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._next_sweep = 1024

    def channel_names(self) -> Any:
        """The channels that have (or had, until the next sweep) history here; a live view."""
        return self._logs.keys()

    def _log(self, channel: str, ttl: int) -> _Log:
        log = self._logs.get(channel)
        now = time.monotonic()
        if log is None and len(self._logs) >= self._next_sweep:
            # Forget expired channels now and then, so memory follows live channels only.
            self._logs = {name: kept for name, kept in self._logs.items() if kept.expires_at >= now}
            self._next_sweep = max(1024, 2 * len(self._logs))
        if log is None or log.expires_at < now:
            log = self._logs[channel] = _Log(epoch=new_epoch(), expires_at=now + ttl)
        return log

    async def append(self, channel: str, prefix: str, suffix: str, *, size: int, ttl: int) -> tuple[int, str, str]:
        log = self._log(channel, ttl)
        log.offset += 1
        log.expires_at = time.monotonic() + ttl
        text = protocol.complete_message(prefix, log.offset, log.epoch, suffix)
        if size > 0:
            log.entries.append((log.offset, text))
            while len(log.entries) > size:
                log.entries.popleft()
        return log.offset, log.epoch, text

    async def position(self, channel: str, *, ttl: int) -> Position:
        log = self._log(channel, ttl)
        return Position(log.offset, log.epoch)

    async def since(self, channel: str, since: protocol.Since, *, ttl: int) -> Recovery:
        log = self._log(channel, ttl)
        position = Position(log.offset, log.epoch)
        if since.epoch != log.epoch or since.offset > log.offset:
            return Recovery([], False, position)
        missed = [entry for entry in log.entries if entry[0] > since.offset]
        complete = since.offset == log.offset or (bool(missed) and missed[0][0] == since.offset + 1)
        return Recovery(missed, complete, position)

    async def latest(self, channel: str, limit: int, *, ttl: int) -> tuple[list[tuple[int, str]], Position]:
        log = self._log(channel, ttl)
        return list(log.entries)[-limit:], Position(log.offset, log.epoch)

    def prune_before(self, before_ms: int, *, dry_run: bool = False) -> int:
        """Drop (or with `dry_run` count) stored messages sent before `before_ms`; the retention job's entry point.

        Offsets and epochs stay: a client asking for pruned messages gets
        `recovered: false`, as for any other gap in history.
        """
        dropped = 0
        for log in list(self._logs.values()):
            entries = log.entries
            index = 0
            while index < len(entries) and _older(entries[index][1], before_ms):
                index += 1
            dropped += index
            if not dry_run:
                for _ in range(index):
                    entries.popleft()
        return dropped

    def trim_to(self, per_channel: int, *, dry_run: bool = False) -> int:
        """Keep at most `per_channel` newest messages in each channel; how many went (or would go)."""
        dropped = 0
        for log in list(self._logs.values()):
            surplus = max(0, len(log.entries) - per_channel)
            dropped += surplus
            if not dry_run:
                for _ in range(surplus):
                    log.entries.popleft()
        return dropped


def stored_message(offset: int, epoch: str, fields: dict[bytes, bytes]) -> str:
    """The frame of one Redis stream entry: `m` holds it in the clear, `c` sealed (prefix NUL suffix, see append)."""
    sealed = fields.get(b"c")
    if sealed is None:
        return fields[b"m"].decode()
    prefix, _, suffix = encryption.decrypt_text(sealed.decode()).partition("\0")
    return protocol.complete_message(prefix, offset, epoch, suffix)


def entry_time_ms(fields: dict[bytes, bytes]) -> int | None:
    """The `ts` of a stored stream entry, sealed or not (the retention job's reader)."""
    sealed = fields.get(b"c")
    if sealed is None:
        return message_time_ms(fields.get(b"m", b""))
    prefix, _, suffix = encryption.decrypt_text(sealed.decode()).partition("\0")
    return message_time_ms(protocol.complete_message(prefix, 0, "", suffix))


def message_time_ms(text: str | bytes) -> int | None:
    """The `ts` (ms) a stored message frame was sent at (see protocol.message_frame_parts), or None."""
    match = _MESSAGE_TS.match(text.decode() if isinstance(text, bytes) else text)
    return int(match.group(1)) if match else None


# The frame starts {"header":{"type":"message","channel":"…","offset":N,"epoch":"…","ts":N — a
# channel name or epoch never holds a quote, so this reads the time without parsing the payload.
_MESSAGE_TS = re.compile(r'\{"header":\{"type":"message","channel":"[^"]*","offset":\d+,"epoch":"[^"]*","ts":(\d+)')


def _older(text: str, before_ms: int) -> bool:
    # A message whose time cannot be read is never counted as old: only what is
    # known to be past retention is deleted.
    sent = message_time_ms(text)
    return sent is not None and sent < before_ms


# One round trip per publish: assign the offset, store, and fan out to the processes subscribed
# to the channel (ARGV[7]: PUBLISH, or SPUBLISH on a cluster, where the topic shares the keys' slot).
# ARGV[8], when encryption is on, is the frame sealed without its offset and epoch (they are the
# entry's id and the channel's epoch key): the stream then holds only ciphertext, while subscribers
# get the frame in the clear over pub/sub, which Redis never stores.
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local offset = redis.call('INCR', KEYS[1])
local text = ARGV[5] .. offset .. ',"epoch":"' .. epoch .. '"' .. ARGV[6]
local size = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if size > 0 then
  if ARGV[8] and ARGV[8] ~= '' then
    redis.call('XADD', KEYS[3], 'MAXLEN', size, offset .. '-1', 'c', ARGV[8])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', size, offset .. '-1', 'm', text)
  end
  redis.call('EXPIRE', KEYS[3], ttl)
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call(ARGV[7] or 'PUBLISH', ARGV[4], offset .. ' ' .. text)
return {offset, epoch}
"""


class RedisHistory:
    """History in Redis Streams, shared by every server process (`sharded`: on a Redis Cluster)."""

    def __init__(self, redis: Any, prefix: str, *, sharded: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.sharded = sharded
        self._publish_command = "SPUBLISH" if sharded else "PUBLISH"
        self._sha = hashlib.sha1(_PUBLISH_LUA.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA1)
        self._publish = redis.register_script(_PUBLISH_LUA)  # (sync callers: the retention jobs' tests)

    def keys(self, channel: str) -> tuple[str, str, str]:
        # One hash tag per channel keeps a channel's keys in one Redis Cluster slot.
        base = f"{self.prefix}:{{{channel}}}"
        return f"{base}:offset", f"{base}:epoch", f"{base}:stream"

    def pubsub_channel(self, channel: str) -> str:
        # The kernel bus's topic of the channel (Bus.topic): the same hash tag as its keys.
        return f"{self.prefix}:{{{channel}}}:pub"

    async def publish_event(self, channel: str, text: str) -> None:
        """A frame outside history (offset 0) to the channel's subscribers in every process."""
        await self.redis.execute_command(self._publish_command, self.pubsub_channel(channel), "0 " + text)

    async def append(self, channel: str, prefix: str, suffix: str, *, size: int, ttl: int) -> tuple[int, str, str]:
        keys = self.keys(channel)
        # Sealed only when it is stored (size > 0): the offset and epoch are not in it, so it is made here.
        sealed = encryption.encrypt_text(prefix + "\0" + suffix) if size > 0 else ""
        args = [new_epoch(), size, ttl, self.pubsub_channel(channel), prefix, suffix, self._publish_command]
        args.append(sealed if sealed.startswith(encryption.TEXT_PREFIX) else "")
        try:
            offset, epoch = await self.redis.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            # Not cached on this server yet (a restart, or a replica just promoted: scripts are not
            # replicated); EVAL runs it on the node that owns the channel and caches it there.
            offset, epoch = await self.redis.eval(_PUBLISH_LUA, len(keys), *keys, *args)
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return int(offset), epoch, protocol.complete_message(prefix, int(offset), epoch, suffix)

    async def position(self, channel: str, *, ttl: int) -> Position:
        offset_key, epoch_key, _ = self.keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(epoch_key, new_epoch(), nx=True, ex=ttl)
            pipe.get(epoch_key)
            pipe.get(offset_key)
            _, epoch, offset = await pipe.execute()
        return Position(int(offset or 0), epoch.decode())

    async def since(self, channel: str, since: protocol.Since, *, ttl: int) -> Recovery:
        offset_key, epoch_key, stream_key = self.keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(epoch_key, new_epoch(), nx=True, ex=ttl)
            pipe.get(epoch_key)
            pipe.get(offset_key)
            pipe.xrange(stream_key, min=f"{since.offset + 1}-0", max="+")
            _, epoch, offset, entries = await pipe.execute()
        position = Position(int(offset or 0), epoch.decode())
        if since.epoch != position.epoch or since.offset > position.offset:
            return Recovery([], False, position)
        missed = [_entry(entry_id, position.epoch, fields) for entry_id, fields in entries]
        complete = since.offset == position.offset or (bool(missed) and missed[0][0] == since.offset + 1)
        return Recovery(missed, complete, position)

    async def latest(self, channel: str, limit: int, *, ttl: int) -> tuple[list[tuple[int, str]], Position]:
        offset_key, epoch_key, stream_key = self.keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(epoch_key, new_epoch(), nx=True, ex=ttl)
            pipe.get(epoch_key)
            pipe.get(offset_key)
            pipe.xrevrange(stream_key, max="+", min="-", count=limit)
            _, epoch, offset, entries = await pipe.execute()
        position = Position(int(offset or 0), epoch.decode())
        messages = [_entry(entry_id, position.epoch, fields) for entry_id, fields in reversed(entries)]
        return messages, position


def _entry(entry_id: bytes, epoch: str, fields: dict[bytes, bytes]) -> tuple[int, str]:
    offset = int(entry_id.split(b"-")[0])
    return offset, stored_message(offset, epoch, fields)


def stream_key_pattern(prefix: str) -> str:
    """A SCAN pattern for every channel's stream key (RedisHistory.keys)."""
    return f"{glob_escape(prefix)}:{{*}}:stream"


def glob_escape(text: str) -> str:
    """`text` matched literally in a Redis SCAN/KEYS pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
