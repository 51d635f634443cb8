"""The MessagePack codec of the /ws/ protocol (subprotocol `webconnect.msgpack.v1`).

The same envelopes as protocol.py, as MessagePack binary frames, under the same limits (nesting,
integer digits, finite floats, valid UTF-8, frame size). A publish whose payload is MessagePack
`bin` is a binary message: stored as base64 like a JSON client's `encoding: "base64"` publish,
and delivered to MessagePack clients as `bin` again (no `encoding` header, the type says it), so
bytes stay bytes on the wire. Validation of the envelope itself is protocol.frame_from_envelope.

Server frames are encoded once, as JSON, by the hub and history; a MessagePack socket's writer
transcodes each one here. The transcoding is cached by the frame's string, so a fan-out to many
MessagePack sockets (the same string object) transcodes once.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from typing import Any

import msgpack

from webconnect.realtime import protocol
from webconnect.realtime.protocol import ProtocolError

_INT_LIMIT = 10**protocol.MAX_INT_DIGITS  # the JSON rule: at most 19 digits


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"MessagePack extension type {code} is not accepted")


def _check(value: Any) -> bytes | None:
    """Apply the JSON parser's limits; the top-level payload's bytes (a binary publish) if any.

    Iterative, so a deep value cannot exhaust the Python stack. Bytes are only valid as the
    envelope's whole `payload`: anywhere else they have no JSON form to store.
    """
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", "a frame must be a MessagePack map")
    binary: bytes | None = None
    payload = value.get("payload")
    if isinstance(payload, bytes):
        binary = payload
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > protocol.MAX_DEPTH:
            raise ProtocolError("bad_request", f"MessagePack nested deeper than {protocol.MAX_DEPTH}")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ProtocolError("bad_request", "map keys must be strings")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise ProtocolError("bad_request", "number too large")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ProtocolError("bad_request", "number too large")
        elif isinstance(item, bytes):
            if item is not binary:
                raise ProtocolError("bad_request", "binary data is accepted only as a publish's whole payload")
        else:  # pragma: no cover - msgpack yields nothing else with these options
            raise ProtocolError("bad_request", f"unsupported value {type(item).__name__}")
    return binary


def loads(data: bytes) -> Any:
    """Strict MessagePack: one value, no extension types, string map keys, the JSON limits."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,  # str is UTF-8, decoded strictly: invalid UTF-8 (a surrogate too) is an error
            strict_map_key=True,
            ext_hook=_refuse_ext,
        )
    except msgpack.StackError:
        raise ProtocolError("bad_request", f"MessagePack nested deeper than {protocol.MAX_DEPTH}") from None
    except msgpack.ExtraData:
        raise ProtocolError("bad_request", "a frame must hold exactly one MessagePack value") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError("bad_request", f"malformed MessagePack: {exc}") from None
    return value


def parse_frame(data: bytes) -> protocol.Frame:
    """Parse one client binary frame or raise ProtocolError."""
    value = loads(data)
    binary = _check(value)
    if binary is not None:
        header = value.get("header")
        if not isinstance(header, dict) or header.get("type") != "publish":
            frame = protocol.frame_from_envelope({**value, "payload": None}, escaped=False)
            raise ProtocolError("bad_request", "a binary payload is accepted only in a publish", id=frame.id)
        if header.get("encoding", "base64") != "base64":
            raise ProtocolError("bad_request", "a binary payload cannot have header.encoding 'json'")
        value = {
            "header": {**header, "encoding": "base64"},
            "payload": {"data": base64.b64encode(binary).decode("ascii")},
        }
    return protocol.frame_from_envelope(value, escaped=False)


# --- Encoding (server -> client) ------------------------------------------------------------


def _unwrap_binary(frame: Any) -> None:
    """A base64 `message` frame becomes a `bin` payload without its `encoding` header (in place)."""
    header = frame.get("header") if isinstance(frame, dict) else None
    if not isinstance(header, dict) or header.get("encoding") != "base64":
        return
    payload = frame.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("data"), str):
        frame["payload"] = base64.b64decode(payload["data"])
        del header["encoding"]


@functools.lru_cache(maxsize=256)
def from_json(text: str) -> bytes:
    """One server frame, encoded by protocol.py as JSON, as MessagePack (a history ack's messages too)."""
    frame = json.loads(text)
    _unwrap_binary(frame)
    payload = frame.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("messages"), list):
        for message in payload["messages"]:
            _unwrap_binary(message)
    return bytes(msgpack.packb(frame, use_bin_type=True))


def dumps(value: Any) -> bytes:
    """A client frame as MessagePack (clients and tests)."""
    return bytes(msgpack.packb(value, use_bin_type=True))
