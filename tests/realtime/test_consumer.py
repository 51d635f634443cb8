"""The /ws/ endpoint through real connections (WebsocketCommunicator on webconnect.asgi)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.realtime.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_subscribe_publish_and_ack(alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    b = await open_ws(bearer(await token_for("bob")))
    # A channel of its own: embedded history is per process, so another test's publishes would move its offsets.
    ack = await b.call("subscribe", channel="chat.first-ack")
    assert ack["header"]["type"] == "ack" and ack["payload"]["offset"] == 0 and ack["payload"]["epoch"]
    ack = await a.call("publish", {"text": "hi"}, channel="chat.first-ack")
    assert ack["header"]["type"] == "ack" and ack["payload"]["offset"] == 1
    message = await b.recv_type("message")
    header = message["header"]
    assert header["channel"] == "chat.first-ack" and header["offset"] == 1
    assert header["epoch"] == ack["payload"]["epoch"] and isinstance(header["ts"], int)
    assert header["from"] == {"user_id": alice.pk, "name": "alice"}
    assert message["payload"] == {"text": "hi"}


async def test_a_publisher_subscribed_to_its_channel_gets_its_own_message(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.echo")
    await a.send("publish", {"n": 1}, channel="chat.echo")
    frames = [await a.recv(), await a.recv(), await a.recv()]
    # chat has join/leave on: alice sees her own join, then the ack and the message.
    assert sorted(f["header"]["type"] for f in frames) == ["ack", "join", "message"]


async def test_unsubscribe_stops_delivery(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.x")
    assert (await a.call("unsubscribe", channel="chat.x"))["header"]["type"] == "ack"
    await a.call("publish", 1, channel="chat.x")
    assert await a.nothing()
    error = await a.call("unsubscribe", channel="chat.x")
    assert error["payload"]["code"] == "not_found"


async def test_ping_request_response_and_unknown_method(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    pong = await a.call("ping")
    assert pong["header"]["type"] == "pong"
    response = await a.call("request", {"x": [1, 2]}, method="echo")
    assert response["header"]["type"] == "response" and response["payload"] == {"x": [1, 2]}
    assert (await a.call("request", None, method="time"))["payload"]["ts"] > 0
    error = await a.call("request", None, method="nope")
    assert error["payload"]["code"] == "not_found" and error["payload"]["id"] == error["header"]["id"]


async def test_history_returns_the_last_messages(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    for n in range(5):
        await a.call("publish", {"n": n}, channel="chat.hist")
    ack = await a.call("history", {"limit": 3}, channel="chat.hist")
    assert [m["payload"]["n"] for m in ack["payload"]["messages"]] == [2, 3, 4]
    assert [m["header"]["offset"] for m in ack["payload"]["messages"]] == [3, 4, 5]
    assert ack["payload"]["offset"] == 5


async def test_base64_payloads_travel_with_their_encoding(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.bin")
    await a.send("publish", {"data": "AAECAw=="}, channel="chat.bin", encoding="base64")
    message = await a.recv_type("message")
    assert message["header"]["encoding"] == "base64" and message["payload"] == {"data": "AAECAw=="}
    error = await a.call("publish", {"data": "***"}, channel="chat.bin", encoding="base64")
    assert error["payload"]["code"] == "bad_request"


# --- Authorization -----------------------------------------------------------------------------


async def test_a_token_without_realtime_write_cannot_publish(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice", "realtime:read")))
    assert (await a.call("subscribe", channel="chat.lobby"))["header"]["type"] == "ack"
    error = await a.call("publish", {"x": 1}, channel="chat.lobby")
    assert error["header"]["type"] == "error" and error["payload"]["code"] == "forbidden"


async def test_personal_channels(alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    b = await open_ws(bearer(await token_for("bob")))
    assert (await b.call("subscribe", channel=f"user.{bob.pk}"))["header"]["type"] == "ack"
    denied = await a.call("subscribe", channel=f"user.{bob.pk}")
    assert denied["payload"]["code"] == "forbidden"
    # A WebRTC offer relayed to bob through his personal channel.
    await a.call("publish", {"sdp": "v=0", "kind": "offer"}, channel=f"user.{bob.pk}")
    message = await b.recv_type("message")
    assert message["payload"]["kind"] == "offer" and message["header"]["from"]["user_id"] == alice.pk


async def test_unknown_namespace_is_not_found(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    assert (await a.call("subscribe", channel="nosuch.room"))["payload"]["code"] == "not_found"


async def test_anonymous_connections_are_refused_without_an_anonymous_namespace(
    open_ws: Callable[..., Any],
) -> None:
    connected, code = await open_ws([], expect=False)
    assert not connected and code == 4401


async def test_anonymous_read_when_a_namespace_allows_it(open_ws: Callable[..., Any]) -> None:
    from webconnect.models import Namespace

    await Namespace.objects.acreate(name="public", anonymous_read=True, client_publish=False)
    a = await open_ws([])
    assert (await a.call("subscribe", channel="public.news"))["header"]["type"] == "ack"
    assert (await a.call("publish", 1, channel="public.news"))["payload"]["code"] == "unauthorized"
    assert (await a.call("subscribe", channel="chat.lobby"))["payload"]["code"] == "unauthorized"


async def test_server_only_namespace_refuses_client_publish(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from webconnect.models import Namespace

    await Namespace.objects.filter(name="chat").aupdate(client_publish=False)
    a = await open_ws(bearer(await token_for("alice")))
    assert (await a.call("publish", 1, channel="chat.lobby"))["payload"]["code"] == "forbidden"


async def test_server_only_namespace_accepts_server_and_rest_publishers(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from webconnect.models import Namespace
    from webconnect.realtime.services import channel_publish_from_server

    await Namespace.objects.acreate(name="news", client_publish=False, anonymous_read=True)
    a = await open_ws([])
    await a.call("subscribe", channel="news.front")
    position = await channel_publish_from_server(channel="news.front", payload={"headline": "x"})
    message = await a.recv_type("message")
    assert message["header"]["from"] == {"user_id": None, "name": "server"}
    assert message["header"]["offset"] == position.offset


async def test_payload_schema_is_enforced(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    from webconnect.models import Namespace

    schema = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 10}}}
    await Namespace.objects.filter(name="chat").aupdate(payload_schema=schema)
    a = await open_ws(bearer(await token_for("alice")))
    assert (await a.call("publish", {"text": "ok"}, channel="chat.s"))["header"]["type"] == "ack"
    error = await a.call("publish", {"text": 5}, channel="chat.s")
    assert error["payload"]["code"] == "bad_request" and "text" in error["payload"]["message"]


async def test_rate_limited_publish_answers_retry_after(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from webconnect import authorization

    async def refuse(principal: Any, action: str, resource: Any) -> authorization.RateDecision:
        return authorization.RateDecision(False, retry_after=1.5, limit="1/second")

    previous = authorization._rate_check
    authorization.set_rate_checker(refuse)
    try:
        a = await open_ws(bearer(await token_for("alice")))
        error = await a.call("publish", 1, channel="chat.lobby")
    finally:
        authorization.set_rate_checker(previous)
    assert error["payload"]["code"] == "rate_limited" and error["payload"]["retry_after"] == 1.5


async def test_policy_change_ends_subscriptions_that_are_now_denied(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from webconnect import authorization
    from webconnect.kernel import sessions
    from webconnect.realtime import services

    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.lobby")
    original = services.aauthorize

    async def deny(*args: Any, **kwargs: Any) -> authorization.Decision:
        return authorization.Decision(False, reason="policy changed")

    services.aauthorize = deny  # type: ignore[assignment]
    try:
        await sessions.recheck_all_sessions()
    finally:
        services.aauthorize = original
    error = await a.recv_type("error")
    assert error["payload"]["code"] == "forbidden" and "chat.lobby" in error["payload"]["message"]
    await a.call("publish", 1, channel="chat.lobby")
    assert await a.nothing()


# --- Bad input -----------------------------------------------------------------------------------

BAD_FRAMES = [
    ("not json", "bad_request"),
    ("[1, 2]", "bad_request"),
    ('"string"', "bad_request"),
    ("{}", "bad_request"),
    ('{"header": {"type": "launch"}}', "bad_request"),
    ('{"header": {"type": 5}}', "bad_request"),
    ('{"header": {"type": "subscribe"}}', "bad_request"),
    ('{"header": {"type": "subscribe", "channel": "no spaces.x"}}', "bad_request"),
    ('{"header": {"type": "subscribe", "channel": "nonamespace"}}', "bad_request"),
    ('{"header": {"type": "subscribe", "channel": "chat.' + "x" * 200 + '"}}', "bad_request"),
    ('{"header": {"type": "publish", "channel": "chat.a"}}', "bad_request"),
    ('{"header": {"type": "publish", "channel": "chat.a"}, "payload": 1' + "0" * 400 + "}", "bad_request"),
    ('{"header": {"type": "publish", "channel": "chat.a"}, "payload": 1e999}', "bad_request"),
    ('{"header": {"type": "publish", "channel": "chat.a"}, "payload": NaN}', "bad_request"),
    ('{"header": {"type": "subscribe", "channel": "chat.a"}, "payload": {"since": {"offset": -1}}}', "bad_request"),
    ('{"header": {"type": "history", "channel": "chat.a"}, "payload": {"limit": 100000}}', "bad_request"),
    ('{"header": {"type": "request", "id": "r"}}', "bad_request"),
    ('{"header": {"type": "ping", "id": {"a": 1}}}', "bad_request"),
    ('{"header": {"type": "ping"}, "extra": 1}', "bad_request"),
    ('{"header": {"type": "publish", "channel": "chat.a"}, "payload": ' + "[" * 5000 + "]" * 5000 + "}", "bad_request"),
    ('{"header": {"type": "publish", "channel": "chat.a"}, "payload": ' + "[" * 40 + "]" * 40 + "}", "bad_request"),
]


async def test_bad_frames_get_error_frames_and_the_connection_keeps_working(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    for text, code in BAD_FRAMES:
        await a.send_raw(text)
        error = await a.recv()
        assert error["header"]["type"] == "error", text[:80]
        assert error["payload"]["code"] == code, (text[:80], error)
    assert (await a.call("ping"))["header"]["type"] == "pong"


async def test_a_binary_frame_gets_an_error_frame(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    await a.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await a.recv())["payload"]["code"] == "bad_request"
    assert (await a.call("ping"))["header"]["type"] == "pong"


async def test_errors_are_counted_in_metrics(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    from prometheus_client import REGISTRY

    # Some collectors read the database: ask from a thread, as /metrics does.
    sample = sync_to_async(REGISTRY.get_sample_value)
    before = await sample("webconnect_realtime_errors_total", {"code": "bad_request"}) or 0
    a = await open_ws(bearer(await token_for("alice")))
    await a.send_raw("{")
    await a.recv()
    after = await sample("webconnect_realtime_errors_total", {"code": "bad_request"})
    assert after == before + 1


async def test_a_bad_client_does_not_disturb_another(
    alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    b = await open_ws(bearer(await token_for("bob")))
    await b.call("subscribe", channel="chat.calm")
    for text, _ in BAD_FRAMES:
        await a.send_raw(text)
    await a.call("publish", {"still": "here"}, channel="chat.calm")
    assert (await b.recv_type("message"))["payload"] == {"still": "here"}
    assert json.loads(json.dumps((await b.call("ping"))["header"]))["type"] == "pong"
