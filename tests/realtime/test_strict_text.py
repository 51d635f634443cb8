"""Strict text: a string that cannot be encoded as UTF-8 (a lone surrogate) is refused with bad_request.

Before, a published "\\ud800" was stored and then broke every reader of the channel: with Redis the
publish answered `internal`; embedded, both subscribers' writers died (no more frames, not even
pongs), a new subscriber asking for history got nothing and REST history answered 500.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from webconnect.realtime import protocol
from webconnect.realtime.protocol import ProtocolError, parse_frame

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# st.text() never yields surrogates, so the one inserted below can never pair with a neighbour.
bad_strings = st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), surrogates, st.text(max_size=8))
plain = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
json_values = st.recursive(
    plain,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)


@st.composite
def poisoned(draw: st.DrawFn) -> Any:
    """A JSON value with one bad string somewhere: a value or a key, at any depth up to 8."""
    bad = draw(bad_strings)
    as_key = draw(st.booleans())
    value: Any = {bad: draw(json_values)} if as_key else bad
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            siblings = draw(st.lists(json_values, max_size=2))
            siblings.insert(draw(st.integers(0, len(siblings))), value)
            value = siblings
        else:
            others = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2))
            others["k" * (1 + max(map(len, others), default=0))] = value  # a key no sibling has
            value = others
    return value


def _refused(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_frame(text)
    assert info.value.code == "bad_request"
    return info.value


@settings(max_examples=300)
@given(poisoned(), st.booleans())
def test_a_lone_surrogate_anywhere_in_a_payload_is_bad_request(payload: Any, escaped: bool) -> None:
    frame = {"header": {"type": "publish", "channel": "chat.x", "id": "p1"}, "payload": payload}
    # ensure_ascii: the surrogate arrives as a \\uXXXX escape (what a JSON client sends); otherwise as a
    # raw code point in the text (what a non-validating transport could hand over).
    error = _refused(json.dumps(frame, ensure_ascii=escaped))
    assert "surrogate" in error.message
    if escaped:
        assert error.id == "p1"  # the client learns which frame was refused
    with pytest.raises(ProtocolError) as info:
        protocol.loads(json.dumps(payload, ensure_ascii=escaped))  # the REST publish path
    assert info.value.code == "bad_request"


@settings(max_examples=200)
@given(bad_strings, st.sampled_from(["id", "channel", "type", "method", "extra"]))
def test_a_lone_surrogate_in_the_header_is_bad_request_and_never_echoed(bad: str, where: str) -> None:
    header: dict[str, Any] = {"type": "request", "method": "echo", "id": "r1", "channel": "chat.x"}
    header[where] = bad
    error = _refused(json.dumps({"header": header, "payload": None}))
    assert error.id is None or error.id == "r1"
    protocol.encode_error(error).encode("utf-8")  # the answer itself is always sendable


@given(json_values)
def test_valid_text_still_parses_including_astral_characters_and_escaped_pairs(payload: Any) -> None:
    frame = {"header": {"type": "publish", "channel": "chat.x"}, "payload": {"v": payload, "e": "😀 \U0001f600"}}
    for ensure_ascii in (True, False):
        parsed = parse_frame(json.dumps(frame, ensure_ascii=ensure_ascii))
        assert parsed.payload == {"v": payload, "e": "😀 😀"}
    # An escaped backslash before "ud800" is plain text, not an escape.
    assert protocol.loads(r'"\\ud800"') == "\\ud800"


def test_escaped_pairs_and_lone_halves() -> None:
    assert protocol.loads(r'"\ud83d\ude00"') == "😀"
    for text in (r'"\ud83d"', r'"\uDE00"', r'"\ude00\ud83d"', r'{"\ud800": 1}', r'[[{"a": ["x\udfffy"]}]]'):
        with pytest.raises(ProtocolError) as info:
            protocol.loads(text)
        assert info.value.code == "bad_request", text


# --- Through a real server: the channel keeps serving everybody after the attempt -------------------


async def _answer(ws: Any, frame_id: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["header"].get("id") == frame_id:
            return dict(frame)


async def _message(ws: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["header"]["type"] == "message":
            return dict(frame)


def _rest(server: LiveServer, method: str, path: str, token: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 (a local test server)
        server.url + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
async def test_a_lone_surrogate_is_refused_and_the_channel_keeps_serving(
    alice: Any, bob: Any, live_daphne: LiveServer, mint_token: Callable[..., str]
) -> None:
    channel = f"chat.strict-{uuid.uuid4().hex[:8]}"  # the live server outlives one test
    alice_token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    bob_token = await sync_to_async(mint_token)("bob", "realtime:read realtime:write")
    url = f"{live_daphne.ws_url}/ws/"

    def frame(kind: str, frame_id: str, payload: Any = None) -> str:
        return json.dumps({"header": {"type": kind, "channel": channel, "id": frame_id}, "payload": payload})

    async with (
        websockets.connect(url, additional_headers={"Authorization": f"Bearer {alice_token}"}) as a,
        websockets.connect(url, additional_headers={"Authorization": f"Bearer {bob_token}"}) as b,
    ):
        for ws in (a, b):
            await ws.send(frame("subscribe", "s"))
            assert (await _answer(ws, "s"))["header"]["type"] == "ack"
        # What a JavaScript client sends for JSON.stringify({t: "\ud800"}): valid UTF-8 on the wire.
        await a.send(frame("publish", "bad", {"t": "\ud800"}))
        error = await _answer(a, "bad")
        assert error["header"]["type"] == "error" and error["payload"]["code"] == "bad_request"
        assert "surrogate" in error["payload"]["message"]

        for ws in (a, b):  # both still answer pings
            await ws.send('{"header": {"type": "ping", "id": "p"}}')
            assert (await _answer(ws, "p"))["header"]["type"] == "pong"
        await a.send(frame("publish", "ok", {"t": "fine"}))
        seen = [json.loads(await asyncio.wait_for(a.recv(), 5)) for _ in range(2)]  # ack and message, either order
        ack = next(f for f in seen if f["header"]["type"] == "ack")
        assert ack["payload"]["offset"] == 1  # nothing was stored for the refused frame
        assert [f["payload"] for f in seen if f["header"]["type"] == "message"] == [{"t": "fine"}]
        assert (await _message(b))["payload"] == {"t": "fine"}

        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {bob_token}"}) as late:
            await late.send(frame("history", "h"))
            history = await _answer(late, "h")
            assert [m["payload"] for m in history["payload"]["messages"]] == [{"t": "fine"}]

    status, body = await sync_to_async(_rest)(
        live_daphne, "POST", f"/api/channels/{channel}/publish/", alice_token, rb'{"t": ["\udc00"]}'
    )
    assert status == 400 and body["code"] == "bad_request"
    status, body = await sync_to_async(_rest)(live_daphne, "GET", f"/api/channels/{channel}/history/", alice_token)
    assert status == 200 and [m["payload"] for m in body["messages"]] == [{"t": "fine"}]


@pytest.mark.django_db
def test_dashboard_ingest_refuses_a_lone_surrogate_too(admin_user: Any) -> None:
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    # DRF's JSON parser accepts the escape; the publish service refuses it before anything is stored.
    response = client.post(
        "/api/dashboards/ingest/",
        b'{"channel": "chat.ingest", "messages": [{"t": "\\ud800"}]}',
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["code"] == "bad_request", response.content
    history = client.get("/api/channels/chat.ingest/history/")
    assert history.status_code == 200 and history.json()["messages"] == []
