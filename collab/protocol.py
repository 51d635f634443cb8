"""The y-websocket wire protocol: parse incoming frames, build outgoing ones.

Frame = var-uint message type, then:
  0 sync:      var-uint sub-type (0 step 1 + state vector, 1 step 2 + update, 2 update) + var-bytes
  1 awareness: var-bytes awareness update
  2 auth:      var-uint 0 (permission denied) + var-string reason
  3 query awareness: nothing

pycrdt supplies the sync/awareness builders; the auth and query-awareness
messages it lacks are a few lines here. Parsing is strict (no trailing bytes,
lengths within the frame) because pycrdt accepts some corrupted updates silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pycrdt import (
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_update_message,
    get_state,
    get_update,
    write_var_uint,
)
from pycrdt._sync import create_sync_step1_message, create_sync_step2_message

from webconnect.kernel import codes

MESSAGE_SYNC = int(YMessageType.SYNC)
MESSAGE_AWARENESS = int(YMessageType.AWARENESS)
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3
AUTH_PERMISSION_DENIED = 0

# Close codes (webconnect.kernel.codes, shared by every endpoint). The protocol
# has no error message besides permission-denied, so a refused frame ends the
# connection. y-websocket's convention: 4400-4499 are permanent, 4500-4599 are
# "try again later"; a reconnect re-sends whatever was not stored.
CLOSE_INVALID = codes.INVALID
CLOSE_FORBIDDEN = codes.FORBIDDEN
CLOSE_TOO_LARGE = codes.TOO_LARGE
CLOSE_PERMISSIONS_CHANGED = codes.PERMISSIONS_CHANGED
CLOSE_RATE_LIMITED = codes.RATE_LIMITED
CLOSE_UNAVAILABLE = codes.UNAVAILABLE
CLOSE_RESYNC = codes.RESYNC

EMPTY_UPDATE = b"\x00\x00"


class ProtocolError(Exception):
    """A frame that is not valid y-websocket; `close_code` says how to refuse it."""

    def __init__(self, message: str, close_code: int = CLOSE_INVALID) -> None:
        super().__init__(message)
        self.close_code = close_code


@dataclass(frozen=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True)
class AwarenessUpdate:
    payload: bytes


@dataclass(frozen=True)
class QueryAwareness:
    pass


@dataclass(frozen=True)
class AuthMessage:
    kind: int
    reason: str


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessUpdate | QueryAwareness | AuthMessage


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def var_uint(self) -> int:
        value = 0
        shift = 0
        while True:
            if self.pos >= len(self.data):
                raise ProtocolError("truncated var-uint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ProtocolError("var-uint too long")

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        end = self.pos + length
        if end > len(self.data):
            raise ProtocolError("length exceeds frame")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def var_string(self) -> str:
        try:
            return self.var_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("string is not UTF-8") from exc

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError("trailing bytes after message")


def parse(frame: bytes) -> Message:
    """Decode one frame or raise ProtocolError."""
    reader = _Reader(frame)
    kind = reader.var_uint()
    message: Message
    if kind == MESSAGE_SYNC:
        sub = reader.var_uint()
        payload = reader.var_bytes()
        if sub == YSyncMessageType.SYNC_STEP1:
            message = SyncStep1(payload)
        elif sub == YSyncMessageType.SYNC_STEP2:
            message = SyncStep2(payload)
        elif sub == YSyncMessageType.SYNC_UPDATE:
            message = SyncUpdate(payload)
        else:
            raise ProtocolError(f"unknown sync message {sub}")
    elif kind == MESSAGE_AWARENESS:
        message = AwarenessUpdate(reader.var_bytes())
    elif kind == MESSAGE_QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MESSAGE_AUTH:
        message = AuthMessage(reader.var_uint(), reader.var_string())
    else:
        raise ProtocolError(f"unknown message type {kind}")
    reader.end()
    return message


def check_update(update: bytes) -> None:
    """Cheap structural check before an update touches any document."""
    if update == EMPTY_UPDATE:
        return
    try:
        get_state(update)  # decodes every block header: fails on most corruption
    except Exception as exc:  # pycrdt raises ValueError; anything else is also a bad update
        raise ProtocolError(f"update does not decode: {exc}") from exc


def _state_vector(state: bytes) -> dict[int, int]:
    reader = _Reader(state)
    clocks = {}
    for _ in range(reader.var_uint()):
        client = reader.var_uint()
        clocks[client] = reader.var_uint()
    return clocks


def has_missing_dependencies(update: bytes, state: bytes) -> bool:
    """Whether `update`, applied to a document whose state vector is now `state`, left anything pending.

    Yrs keeps blocks whose causal predecessors it lacks ("pending") and deletions of
    items it has never seen, instead of failing. What it integrated is covered by
    `state`; so whatever of the update `state` does not cover (besides the delete
    set, which is always included) is pending, and so is a deletion beyond `state`.
    """
    residue = get_update(update, state)
    if residue[:1] != b"\x00":  # blocks the document did not integrate
        return True
    clocks = _state_vector(state)
    reader = _Reader(residue)
    reader.var_uint()  # no blocks
    for _ in range(reader.var_uint()):
        client = reader.var_uint()
        for _ in range(reader.var_uint()):
            clock, length = reader.var_uint(), reader.var_uint()
            if clock + length > clocks.get(client, 0):
                return True
    return False


# One awareness state (a caret, a name) is a few hundred bytes; more is refused.
MAX_AWARENESS_STATE_BYTES = 8192


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None: the client id's presence is removed

    @property
    def removed(self) -> bool:
        return self.state is None


def awareness_entries(payload: bytes) -> list[AwarenessEntry]:
    """Decode an awareness update strictly: every state is a JSON object or null (removal)."""
    reader = _Reader(payload)
    count = reader.var_uint()
    if count > 10_000:
        raise ProtocolError("too many awareness entries")
    entries = []
    for _ in range(count):
        client_id = reader.var_uint()
        clock = reader.var_uint()
        raw = reader.var_string()
        if len(raw) > MAX_AWARENESS_STATE_BYTES:
            raise ProtocolError("awareness state too large", CLOSE_TOO_LARGE)
        state: Any = None
        if raw not in {"", "null"}:
            try:
                state = json.loads(raw)
            except ValueError as exc:
                raise ProtocolError(f"awareness state is not JSON: {exc}") from exc
            if not isinstance(state, dict):
                raise ProtocolError("awareness state is not an object")
        entries.append(AwarenessEntry(client_id, clock, state))
    reader.end()
    return entries


def encode_awareness_entries(entries: list[AwarenessEntry]) -> bytes:
    """The awareness update for `entries` (y-protocols' encoding: null for a removal)."""
    out = [write_var_uint(len(entries))]
    for entry in entries:
        try:
            state = json.dumps(entry.state, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:  # e.g. a lone surrogate (a JSON "\\ud800" escape)
            raise ProtocolError(f"awareness state cannot be encoded: {exc}") from exc
        out += [write_var_uint(entry.client_id), write_var_uint(entry.clock), write_var_uint(len(state)), state]
    return b"".join(out)


def sync_step1(state_vector: bytes) -> bytes:
    return create_sync_step1_message(state_vector)


def sync_step2(update: bytes) -> bytes:
    return create_sync_step2_message(update)


def sync_update(update: bytes) -> bytes:
    return create_update_message(update)


def awareness(payload: bytes) -> bytes:
    return create_awareness_message(payload)


def permission_denied(reason: str) -> bytes:
    encoded = reason.encode("utf-8")
    return (
        write_var_uint(MESSAGE_AUTH) + write_var_uint(AUTH_PERMISSION_DENIED) + write_var_uint(len(encoded)) + encoded
    )


def query_awareness() -> bytes:
    return write_var_uint(MESSAGE_QUERY_AWARENESS)
