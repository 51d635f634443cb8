"""The real-time wire protocol: the one place that parses, validates and encodes frames.

Every frame is a JSON object `{"header": {...}, "payload": ...}`. Parsing turns
raw text into a typed `Frame` or raises `ProtocolError` with a client-facing
code; consumers and services never look inside raw JSON themselves.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

# Client -> server frame types. `pong` answers a server ping and gets no ack.
CLIENT_TYPES = frozenset({"subscribe", "unsubscribe", "publish", "request", "presence", "history", "ping", "pong"})
# Types that name a channel in their header.
CHANNEL_TYPES = frozenset({"subscribe", "unsubscribe", "publish", "presence", "history"})

ERROR_CODES = frozenset(
    {
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "rate_limited",
        "limit_exceeded",
        "too_large",
        "unavailable",
        "internal",
    }
)

# Close codes: webconnect.kernel.codes (the same on every endpoint).

# Offered in Sec-WebSocket-Protocol, it lets the server put several envelopes in one text frame,
# one per line (newline-delimited JSON, as Centrifugo does). A JSON envelope as encoded here never
# holds a raw newline, so splitting a frame on "\n" is exact. Without it: one envelope per frame.
BATCH_SUBPROTOCOL = "webconnect.json.batch.v1"
# A batched frame stops growing at this many characters (one envelope alone may be larger).
BATCH_MAX_CHARS = 64 * 1024
# The default codec, selected when a client names it; a client naming no subprotocol gets it too.
JSON_SUBPROTOCOL = "webconnect.json.v1"
# MessagePack binary frames (webconnect.realtime.protocol_msgpack).
MSGPACK_SUBPROTOCOL = "webconnect.msgpack.v1"
SUBPROTOCOLS = (JSON_SUBPROTOCOL, BATCH_SUBPROTOCOL, MSGPACK_SUBPROTOCOL)


def choose_subprotocol(offered: Any) -> str | None:
    """The first subprotocol the client offered that the server speaks (None: plain JSON, none named)."""
    for name in offered or ():
        if name in SUBPROTOCOLS:
            return str(name)
    return None


def join_batch(envelopes: list[str]) -> str:
    """One text frame holding several encoded envelopes (BATCH_SUBPROTOCOL)."""
    return "\n".join(envelopes)


CHANNEL_MAX_LENGTH = 128
# namespace "." name; the name may itself contain dots, colons, dashes, underscores.
CHANNEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9._:-]{1,95}$")
ID_MAX_LENGTH = 64
METHOD_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_DEPTH = 32
MAX_INT_DIGITS = 19  # fits in a signed 64-bit integer, which every client language can represent
HISTORY_MAX_LIMIT = 1000


class ProtocolError(Exception):
    """A client-facing error: becomes an `error` frame with this code."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        id: str | None = None,
        retry_after: float | None = None,
        channel: str | None = None,
    ) -> None:
        super().__init__(message)
        assert code in ERROR_CODES, code
        self.code = code
        self.message = message
        self.id = id
        self.retry_after = retry_after
        self.channel = channel  # set when the error ends one subscription


@dataclass(frozen=True)
class Since:
    offset: int
    epoch: str


@dataclass(frozen=True)
class Frame:
    """A validated client frame."""

    type: str
    id: str | None = None
    channel: str | None = None
    method: str | None = None  # request frames
    payload: Any = None
    since: Since | None = None  # subscribe
    limit: int | None = None  # history
    encoding: str = "json"  # "json" or "base64" (payload is then {"data": "<base64>"})
    extra: dict[str, Any] = field(default_factory=dict)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError("number too large")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number too large")
    return value


def _depth_ok(value: Any, limit: int) -> bool:
    # Iterative, so a deep value cannot exhaust the Python stack here.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return True


# A surrogate code point (U+D800..U+DFFF) on its own is not a character: it cannot be encoded as
# UTF-8, so a stored or relayed frame holding one fails later, far from here (the Redis client
# raises, a socket's writer dies, history cannot be rendered). JSON's `\uD83D\uDE00` pairs decode to
# one astral character, so after decoding any surrogate left in a string is a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")
# A decoded string can only hold a surrogate that came from an escape (`\ud800`) or was in the text
# itself; the text is checked for the latter first, so strings are walked only when an escape is there.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _has_lone_surrogate(value: Any) -> bool:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_text(value: Any, *, id: str | None = None) -> None:
    """Refuse any string (key or value, at any depth) that is not encodable as UTF-8 (lone surrogates)."""
    if _has_lone_surrogate(value):
        raise ProtocolError("bad_request", "strings must be valid Unicode text: lone surrogate (U+D800..U+DFFF)", id=id)


# Built once: json.loads/dumps with options construct a new decoder/encoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, bounded integers and nesting, every string encodable as UTF-8."""
    value, escaped = _loads(text)
    if escaped:
        check_text(value)
    return value


def _loads(text: str) -> tuple[Any, bool]:
    """Decoded value, and whether it may hold a lone surrogate from an escape (check_text still to do)."""
    if not text.isascii() and _SURROGATE.search(text):
        raise ProtocolError("bad_request", "a frame must be valid Unicode text: lone surrogate (U+D800..U+DFFF)")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ProtocolError("bad_request", "JSON nested too deep") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError("bad_request", f"malformed JSON: {exc}") from None
    if not _depth_ok(value, MAX_DEPTH):
        raise ProtocolError("bad_request", f"JSON nested deeper than {MAX_DEPTH}")
    return value, _SURROGATE_ESCAPE.search(text) is not None


def valid_channel(name: object) -> bool:
    return isinstance(name, str) and len(name) <= CHANNEL_MAX_LENGTH and CHANNEL_RE.match(name) is not None


def check_channel(name: object, *, id: str | None = None) -> str:
    if not valid_channel(name):
        raise ProtocolError("bad_request", "invalid channel name: namespace.name, letters, digits and ._-: only", id=id)
    assert isinstance(name, str)
    return name


def namespace_of(channel: str) -> str:
    return channel.split(".", 1)[0]


def parse_frame(text: str) -> Frame:
    """Parse one client text frame or raise ProtocolError."""
    data, escaped = _loads(text)
    return frame_from_envelope(data, escaped=escaped)


def frame_from_envelope(data: Any, *, escaped: bool = True) -> Frame:
    """Validate one decoded envelope (JSON here, MessagePack in protocol_msgpack) into a Frame.

    `escaped`: the value may still hold a lone surrogate (check_text runs); a decoder that
    already refused them passes False.
    """
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "a frame must be a JSON object")
    header = data.get("header")
    if not isinstance(header, dict):
        raise ProtocolError("bad_request", "header must be an object")
    if escaped:
        check_text(header)  # before header.id is echoed in any answer
    raw_id = header.get("id")
    frame_id: str | None = None
    if raw_id is not None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise ProtocolError("bad_request", "header.id must be a string or an integer")
        frame_id = str(raw_id)
        if len(frame_id) > ID_MAX_LENGTH:
            raise ProtocolError("bad_request", f"header.id longer than {ID_MAX_LENGTH}")
    if escaped:
        check_text(data, id=frame_id)
    unknown_keys = set(data) - {"header", "payload"}
    if unknown_keys:
        raise ProtocolError("bad_request", f"unknown top-level keys: {sorted(unknown_keys)}", id=frame_id)
    kind = header.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "header.type must be a string", id=frame_id)
    if kind not in CLIENT_TYPES:
        raise ProtocolError("bad_request", f"unknown frame type {kind[:32]!r}", id=frame_id)
    payload = data.get("payload")
    channel = None
    if kind in CHANNEL_TYPES:
        channel = check_channel(header.get("channel"), id=frame_id)
    encoding = header.get("encoding", "json")
    if encoding not in ("json", "base64"):
        raise ProtocolError("bad_request", "header.encoding must be 'json' or 'base64'", id=frame_id)
    if kind == "publish":
        if "payload" not in data:
            raise ProtocolError("bad_request", "publish needs a payload", id=frame_id)
        if encoding == "base64":
            _check_base64(payload, frame_id)
        return Frame(kind, frame_id, channel, payload=payload, encoding=encoding)
    if kind == "subscribe":
        return Frame(kind, frame_id, channel, payload=payload, since=_parse_since(payload, frame_id))
    if kind == "history":
        return Frame(kind, frame_id, channel, payload=payload, limit=_parse_limit(payload, frame_id))
    if kind == "request":
        method = header.get("method")
        if not isinstance(method, str) or not METHOD_RE.match(method):
            raise ProtocolError("bad_request", "request needs header.method (letters, digits, ._:-)", id=frame_id)
        if frame_id is None:
            raise ProtocolError("bad_request", "request needs header.id to match its response")
        return Frame(kind, frame_id, None, method=method, payload=payload)
    return Frame(kind, frame_id, channel, payload=payload)


def _check_base64(payload: Any, frame_id: str | None) -> None:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, str):
        raise ProtocolError("bad_request", 'a base64 payload is {"data": "<base64>"}', id=frame_id)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_request", "payload.data is not valid base64", id=frame_id) from None


def _parse_since(payload: Any, frame_id: str | None) -> Since | None:
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise ProtocolError("bad_request", "subscribe payload must be an object", id=frame_id)
    since = payload.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise ProtocolError("bad_request", "since must be {offset, epoch}", id=frame_id)
    offset, epoch = since.get("offset"), since.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ProtocolError("bad_request", "since.offset must be a non-negative integer", id=frame_id)
    if not isinstance(epoch, str) or len(epoch) > 64:
        raise ProtocolError("bad_request", "since.epoch must be a string", id=frame_id)
    return Since(offset, epoch)


def _parse_limit(payload: Any, frame_id: str | None) -> int:
    if payload is None:
        return 50
    if not isinstance(payload, dict):
        raise ProtocolError("bad_request", "history payload must be an object", id=frame_id)
    limit = payload.get("limit", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise ProtocolError("bad_request", f"limit must be an integer from 1 to {HISTORY_MAX_LIMIT}", id=frame_id)
    return limit


# --- Encoding (server -> client) ------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def encode(kind: str, payload: Any = None, **header: Any) -> str:
    head = {"type": kind, **{k: v for k, v in header.items() if v is not None}}
    return dumps({"header": head, "payload": payload})


def encode_error(error: ProtocolError) -> str:
    payload: dict[str, Any] = {"code": error.code, "message": error.message, "id": error.id}
    if error.retry_after is not None:
        payload["retry_after"] = round(error.retry_after, 3)
    return encode("error", payload, id=error.id, channel=error.channel)


def message_frame_parts(channel: str, payload: Any, sender: dict[str, Any], encoding: str) -> tuple[str, str]:
    """A `message` frame split around its offset and epoch.

    The offset is assigned where the history lives (a Lua script in Redis), so
    the frame is encoded once here and completed there by concatenation:
    prefix + offset + ',"epoch":"' + epoch + '"' + suffix.
    """
    prefix = '{"header":{"type":"message","channel":' + dumps(channel) + ',"offset":'
    rest = {"ts": now_ms(), "from": sender}
    if encoding != "json":
        rest["encoding"] = encoding
    suffix = "," + dumps(rest)[1:-1] + '},"payload":' + dumps(payload) + "}"
    return prefix, suffix


def complete_message(prefix: str, offset: int, epoch: str, suffix: str) -> str:
    return f'{prefix}{offset},"epoch":{dumps(epoch)}{suffix}'
