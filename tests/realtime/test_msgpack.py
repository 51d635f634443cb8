"""MessagePack (`webconnect.msgpack.v1`): the same envelopes as binary frames, the same limits.

The codec is fuzzed beside the JSON parser (one frame, both encodings: the same Frame or the same
refusal), and a MessagePack client and a JSON client on one channel, through a live server, see
the same messages, bytes staying bytes for the MessagePack one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from asgiref.sync import sync_to_async
from hypothesis import given, settings
from hypothesis import strategies as st
from webconnect_client import Client
from websockets.asyncio.client import ClientConnection, connect

from webconnect.realtime import protocol, protocol_msgpack
from webconnect.realtime.protocol import ProtocolError

MSGPACK = "webconnect.msgpack.v1"
DEEP: Any = 1
for _ in range(protocol.MAX_DEPTH):
    DEEP = [DEEP]  # with the envelope: one level deeper than the limit


def outcome(parse: Callable[[Any], protocol.Frame], raw: Any) -> protocol.Frame | str:
    try:
        return parse(raw)
    except ProtocolError as error:
        assert error.code in protocol.ERROR_CODES
        return error.code


# --- The codec ------------------------------------------------------------------------------------


def test_a_publish_with_bytes_is_a_binary_message_stored_as_base64() -> None:
    frame = protocol_msgpack.parse_frame(
        protocol_msgpack.dumps({"header": {"type": "publish", "channel": "chat.a", "id": 1}, "payload": b"\x00\xff"})
    )
    assert (frame.type, frame.id, frame.encoding) == ("publish", "1", "base64")
    assert base64.b64decode(frame.payload["data"]) == b"\x00\xff"


def test_a_base64_message_reaches_a_msgpack_client_as_bytes_without_an_encoding_header() -> None:
    prefix, suffix = protocol.message_frame_parts(
        "chat.a", {"data": base64.b64encode(b"\x01\x02").decode()}, {"user_id": 1, "name": "a"}, "base64"
    )
    frame = msgpack.unpackb(protocol_msgpack.from_json(protocol.complete_message(prefix, 3, "e", suffix)))
    assert frame["payload"] == b"\x01\x02" and "encoding" not in frame["header"]
    assert frame["header"]["offset"] == 3


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"header": {"type": "ping"}, "payload": DEEP}, "nested 33 levels"),
        ({"header": {"type": "ping"}, "payload": 10**19}, "integer of 20 digits"),
        ({"header": {"type": "ping"}, "payload": [2**64 - 1]}, "the largest uint64 (20 digits)"),
        ({"header": {"type": "ping"}, "payload": math.nan}, "NaN"),
        ({"header": {"type": "ping"}, "payload": math.inf}, "Infinity"),
        ({"header": {"type": "ping"}, "payload": {1: "x"}}, "integer key"),
        ({"header": {"type": "publish", "channel": "chat.a"}, "payload": {"a": b"x"}}, "bytes inside a payload"),
        ({"header": {"type": "subscribe", "channel": "chat.a"}, "payload": b"x"}, "bytes outside a publish"),
        ({"header": {"type": "publish", "channel": "chat.a", "encoding": "json"}, "payload": b"x"}, "bytes as json"),
        ({"header": {"type": "publish", "channel": "chat a"}, "payload": 1}, "bad channel"),
        ([1, 2], "not a map"),
    ],
)
def test_the_json_limits_apply_to_msgpack(value: Any, why: str) -> None:
    raw = msgpack.packb(value, use_bin_type=True, strict_types=False)
    assert outcome(protocol_msgpack.parse_frame, raw) == "bad_request", why


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xd4\x01\x00", "an extension type"),
        (b"\x81\xa1a\xa1b" + b"\xc0", "two values in one frame"),
        (b"\x81\xa6header\xa3\xed\xa0\x80", "a lone surrogate as (invalid) UTF-8"),
        (b"\x91" * 2000 + b"\xc0", "nesting beyond the unpacker's stack"),
        (b"\xdb\xff\xff\xff\xff", "a truncated string"),
        (b"", "nothing"),
    ],
)
def test_malformed_msgpack_is_a_bad_request(raw: bytes, why: str) -> None:
    assert outcome(protocol_msgpack.parse_frame, raw) == "bad_request", why


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
headers = st.fixed_dictionaries(
    {"type": st.sampled_from([*sorted(protocol.CLIENT_TYPES), "nope"])},
    optional={
        "id": st.one_of(st.text(max_size=70), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.booleans()),
        "channel": st.sampled_from(["chat.a", "chat", "x.y.z", "é.x", ""]) | st.text(max_size=10),
        "method": st.sampled_from(["echo", "bad method"]),
        "encoding": st.sampled_from(["json", "base64", "zip"]),
    },
)
frames = st.fixed_dictionaries(
    {"header": headers},
    optional={
        "payload": values
        | st.fixed_dictionaries({"since": st.fixed_dictionaries({"offset": values, "epoch": values})})
        | st.fixed_dictionaries({"limit": values})
        | st.fixed_dictionaries({"data": st.text(max_size=12)})
    },
)


@settings(max_examples=400, deadline=None)
@given(frames)
def test_fuzz_one_frame_in_both_codecs_parses_the_same_or_is_refused_the_same(frame: dict[str, Any]) -> None:
    as_json = outcome(protocol.parse_frame, json.dumps(frame, allow_nan=True))
    as_msgpack = outcome(protocol_msgpack.parse_frame, msgpack.packb(frame, use_bin_type=True))
    if isinstance(as_json, protocol.Frame) and isinstance(as_msgpack, protocol.Frame):
        # Floats can differ in their last digits through JSON text; compare what the limits decide.
        assert (as_json.type, as_json.id, as_json.channel, as_json.encoding, as_json.since, as_json.limit) == (
            as_msgpack.type,
            as_msgpack.id,
            as_msgpack.channel,
            as_msgpack.encoding,
            as_msgpack.since,
            as_msgpack.limit,
        )
    else:
        assert as_json == as_msgpack


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_never_raise_anything_but_protocol_error(raw: bytes) -> None:
    outcome(protocol_msgpack.parse_frame, raw)


@settings(max_examples=300, deadline=None)
@given(frames, st.binary(min_size=1, max_size=8), st.integers(min_value=0, max_value=200))
def test_fuzz_mutated_valid_msgpack_frames(frame: dict[str, Any], noise: bytes, position: int) -> None:
    raw = msgpack.packb(frame, use_bin_type=True)
    position %= len(raw) + 1
    outcome(protocol_msgpack.parse_frame, raw[:position] + noise + raw[position + len(noise) :])


# --- Through a live server ------------------------------------------------------------------------


@pytest.fixture
async def token(alice: Any, mint_token: Callable[..., str]) -> str:
    return await sync_to_async(mint_token)("alice", "realtime:read realtime:write")


async def recv_msgpack(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        raw = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(raw, bytes), f"a text frame on a MessagePack socket: {raw!r}"
        frame = msgpack.unpackb(raw)
        if frame["header"]["type"] == kind:
            return dict(frame)


@pytest.mark.django_db(transaction=True)
async def test_a_msgpack_client_and_a_json_client_on_one_channel_see_the_same_messages(
    live_daphne: Any, token: str
) -> None:
    url = f"{live_daphne.ws_url}/ws/"
    async with (
        Client(url, token=token) as json_client,
        Client(url, token=token, msgpack=True) as msgpack_client,
    ):
        assert msgpack_client.msgpack_negotiated and not json_client.msgpack_negotiated
        from_json: list[Any] = []
        from_msgpack: list[Any] = []
        await json_client.subscribe("chat.codecs", lambda m: from_json.append((m.offset, m.encoding, m.payload)))
        await msgpack_client.subscribe("chat.codecs", lambda m: from_msgpack.append((m.offset, m.encoding, m.payload)))
        await json_client.publish("chat.codecs", {"t": 21.5, "ok": True, "name": "é"})
        await msgpack_client.publish("chat.codecs", {"t": 22.0, "ok": False, "name": "ü"})
        await msgpack_client.publish("chat.codecs", b"\x00\x01\xfe\xff")
        for _ in range(100):
            if len(from_json) == 3 and len(from_msgpack) == 3:
                break
            await asyncio.sleep(0.05)
    blob = base64.b64encode(b"\x00\x01\xfe\xff").decode()
    assert from_json == [
        (1, "json", {"t": 21.5, "ok": True, "name": "é"}),
        (2, "json", {"t": 22.0, "ok": False, "name": "ü"}),
        (3, "base64", {"data": blob}),
    ]
    # The same messages; the binary one is bytes again, not base64.
    assert from_msgpack == [*from_json[:2], (3, "binary", b"\x00\x01\xfe\xff")]


@pytest.mark.django_db(transaction=True)
async def test_a_msgpack_socket_answers_bad_frames_with_error_frames_and_keeps_serving(
    live_daphne: Any, token: str
) -> None:
    async with connect(
        f"{live_daphne.ws_url}/ws/",
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["webconnect.msgpack.v1", "webconnect.json.v1"],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == MSGPACK
        await ws.send('{"header": {"type": "ping"}}')  # text on a MessagePack socket
        error = await recv_msgpack(ws, "error")
        assert error["payload"]["code"] == "bad_request" and "MessagePack" in error["payload"]["message"]
        await ws.send(msgpack.packb({"header": {"type": "ping", "id": "big"}, "payload": 2**64 - 1}))
        error = await recv_msgpack(ws, "error")
        assert error["payload"]["code"] == "bad_request"
        await ws.send(msgpack.packb({"header": {"type": "history", "id": "h", "channel": "chat.codecs2"}}))
        ack = await recv_msgpack(ws, "ack")
        assert ack["header"]["id"] == "h" and ack["payload"]["messages"] == []


@pytest.mark.django_db(transaction=True)
async def test_the_first_offer_the_server_speaks_is_selected(live_daphne: Any, token: str) -> None:
    for offered, chosen in (
        (["webconnect.json.v1", MSGPACK], "webconnect.json.v1"),
        (["x.unknown", MSGPACK], MSGPACK),
        (["x.unknown"], None),
    ):
        async with connect(
            f"{live_daphne.ws_url}/ws/",
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=offered,  # type: ignore[arg-type]
        ) as ws:
            assert ws.subprotocol == chosen
