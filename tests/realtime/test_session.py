"""Recovery, presence, tickets, limits and revocation through real connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tests.realtime.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


async def close_of(socket: Any) -> dict[str, Any]:
    """The close the server sent, skipping frames queued before it."""
    for _ in range(100):
        output = await socket.communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            return dict(output)
    raise AssertionError("not closed")


async def test_recovery_after_a_disconnect_has_no_gap_and_no_duplicate(
    alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    publisher = await open_ws(bearer(await token_for("alice")))
    b_token = await token_for("bob")
    b = await open_ws(bearer(b_token))
    ack = await b.call("subscribe", channel="chat.rec")
    epoch = ack["payload"]["epoch"]
    for n in range(3):
        await publisher.call("publish", {"n": n}, channel="chat.rec")
    seen = [(await b.recv_type("message"))["header"]["offset"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await b.close()
    for n in range(3, 7):
        await publisher.call("publish", {"n": n}, channel="chat.rec")
    b2 = await open_ws(bearer(b_token))
    ack = await b2.call("subscribe", {"since": {"offset": 3, "epoch": epoch}}, channel="chat.rec")
    assert ack["payload"]["recovered"] is True and ack["payload"]["offset"] == 7
    await publisher.call("publish", {"n": 7}, channel="chat.rec")
    offsets = [(await b2.recv_type("message"))["header"]["offset"] for _ in range(5)]
    assert offsets == [4, 5, 6, 7, 8]
    assert await b2.nothing()


async def test_recovery_reports_a_gap_it_cannot_fill(
    admin_user: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from webconnect.models import Namespace

    await Namespace.objects.acreate(name="tiny", history_size=2, history_ttl=60)
    a = await open_ws(bearer(await token_for("root", "realtime:read")))
    from webconnect.realtime.hub import get_hub
    from webconnect.realtime.selectors import anamespace_get

    ns = await anamespace_get("tiny")
    assert ns is not None
    hub = get_hub()
    position = None
    for n in range(5):
        position = await hub.publish("tiny.t", ns, {"n": n}, {"user_id": None, "name": "server"})
    assert position is not None
    ack = await a.call("subscribe", {"since": {"offset": 1, "epoch": position.epoch}}, channel="tiny.t")
    assert ack["payload"]["recovered"] is False, ack
    ack = await a.call("subscribe", {"since": {"offset": 0, "epoch": "stale"}}, channel="tiny.u")
    assert ack["payload"]["recovered"] is False


async def test_presence_counts_connections_per_user(
    alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    token = await token_for("alice")
    a1, a2 = await open_ws(bearer(token)), await open_ws(bearer(token))
    b = await open_ws(bearer(await token_for("bob")))
    for socket in (a1, a2, b):
        await socket.call("subscribe", channel="chat.p")
    ack = await b.call("presence", channel="chat.p")
    assert ack["payload"]["clients"] == [
        {"user_id": alice.pk, "name": "alice", "connections": 2},
        {"user_id": bob.pk, "name": "bob", "connections": 1},
    ]
    await a2.close()
    await asyncio.sleep(0.1)
    ack = await b.call("presence", channel="chat.p")
    assert [c["connections"] for c in ack["payload"]["clients"]] == [1, 1]


async def test_join_and_leave_events(alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.jl")
    b = await open_ws(bearer(await token_for("bob")))
    await b.call("subscribe", channel="chat.jl")
    join = await a.recv_type("join")
    if join["payload"]["user_id"] == alice.pk:  # her own join comes first
        join = await a.recv_type("join")
    assert join["header"]["channel"] == "chat.jl" and join["payload"]["user_id"] == bob.pk
    await b.call("unsubscribe", channel="chat.jl")
    assert (await a.recv_type("leave"))["payload"]["name"] == "bob"


# --- Handshake: tickets and cookies -----------------------------------------------------------


async def test_a_ticket_works_once(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    from webconnect.identity import ConnectionAuth
    from webconnect.realtime.tickets import ticket_issue

    ticket = await sync_to_async(ticket_issue)(user=alice, auth=ConnectionAuth(method="session"))
    a = await open_ws(path=f"/ws/?ticket={ticket}")
    assert (await a.call("subscribe", channel="chat.t"))["header"]["type"] == "ack"
    connected, code = await open_ws(path=f"/ws/?ticket={ticket}", expect=False)
    assert not connected and code == 4403  # replay refused
    connected, code = await open_ws(path="/ws/?ticket=forged", expect=False)
    assert not connected and code == 4403


async def test_an_expired_ticket_is_refused(alice: Any, open_ws: Callable[..., Any]) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from webconnect.identity import ConnectionAuth
    from webconnect.models import RealtimeTicket
    from webconnect.realtime.tickets import ticket_issue

    ticket = await sync_to_async(ticket_issue)(user=alice, auth=ConnectionAuth(method="session"))
    await RealtimeTicket.objects.all().aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    connected, code = await open_ws(path=f"/ws/?ticket={ticket}", expect=False)
    assert not connected and code == 4403


async def test_a_ticket_keeps_the_scopes_of_the_token_that_asked_for_it(
    alice: Any, open_ws: Callable[..., Any]
) -> None:
    from webconnect.identity import ConnectionAuth
    from webconnect.realtime.tickets import ticket_issue

    auth = ConnectionAuth(method="bearer", scopes=frozenset({"realtime:read"}), token_id=None)
    ticket = await sync_to_async(ticket_issue)(user=alice, auth=auth)
    a = await open_ws(path=f"/ws/?ticket={ticket}")
    assert (await a.call("publish", 1, channel="chat.t"))["payload"]["code"] == "forbidden"


async def test_a_session_from_the_same_origin_connects_and_a_foreign_origin_is_refused(
    alice: Any, open_ws: Callable[..., Any], session_headers: Any
) -> None:
    headers = await session_headers(alice)
    a = await open_ws(headers)
    assert (await a.call("subscribe", channel="chat.s"))["header"]["type"] == "ack"
    foreign = [(k, b"https://evil.example" if k == b"origin" else v) for k, v in headers]
    connected, code = await open_ws(foreign, expect=False)
    assert not connected and code == 4403


async def test_revoking_a_token_closes_its_sockets(alice: Any, open_ws: Callable[..., Any], token_for: Any) -> None:
    from oauth2_provider.models import AccessToken

    a = await open_ws(bearer(await token_for("alice")))
    other = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.r")
    token = await AccessToken.objects.order_by("id").afirst()
    assert token is not None
    await sync_to_async(token.revoke)()
    assert await close_of(a) == {"type": "websocket.close", "code": 4002, "reason": "token revoked"}
    assert (await other.call("ping"))["header"]["type"] == "pong"


async def test_signing_out_closes_browser_sockets(
    alice: Any, open_ws: Callable[..., Any], session_headers: Any, token_for: Any
) -> None:
    headers = await session_headers(alice)
    a = await open_ws(headers)
    program = await open_ws(bearer(await token_for("alice")))
    await a.call("ping")
    cookie = dict(headers)[b"cookie"].decode().split("=", 1)[1]
    client = Client()
    client.cookies["sessionid"] = cookie
    await sync_to_async(client.post)("/accounts/logout/")
    assert (await close_of(a))["code"] == 4002
    assert (await program.call("ping"))["header"]["type"] == "pong"


# --- Limits -----------------------------------------------------------------------------------


async def test_an_oversized_frame_closes_with_4413(
    alice: Any, open_ws: Callable[..., Any], token_for: Any, settings: Any
) -> None:
    settings.REALTIME_MAX_FRAME_BYTES = 1024
    a = await open_ws(bearer(await token_for("alice")))
    await a.send("publish", {"blob": "x" * 2000}, channel="chat.big")
    assert (await close_of(a))["code"] == 4413


async def test_the_subscription_limit(alice: Any, open_ws: Callable[..., Any], token_for: Any, settings: Any) -> None:
    settings.REALTIME_MAX_SUBSCRIPTIONS = 2
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.1")
    await a.call("subscribe", channel="chat.2")
    error = await a.call("subscribe", channel="chat.3")
    assert error["payload"]["code"] == "limit_exceeded"


async def test_server_pings_and_an_idle_connection_is_closed(
    alice: Any, open_ws: Callable[..., Any], token_for: Any, settings: Any
) -> None:
    settings.REALTIME_HEARTBEAT_INTERVAL = 1
    settings.REALTIME_IDLE_TIMEOUT = 2
    a = await open_ws(bearer(await token_for("alice")))
    assert (await a.recv(wait=3))["header"]["type"] == "ping"
    await a.send("pong", id=None)
    for _ in range(10):
        output = await a.communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            assert output["code"] == 4000
            return
    raise AssertionError("idle connection not closed")


async def test_a_slow_consumer_is_disconnected_with_a_reason(
    alice: Any, open_ws: Callable[..., Any], token_for: Any, settings: Any
) -> None:
    from webconnect.kernel.sessions import live_sessions

    settings.REALTIME_QUEUE_SIZE = 5
    a = await open_ws(bearer(await token_for("alice")))
    await a.call("subscribe", channel="chat.slow")
    (connection,) = [session.connection for session in live_sessions() if not session.closing]

    # The socket stops draining: the writer is stuck as if the peer never read.
    async def stuck(text: str) -> None:
        await asyncio.sleep(3600)

    connection._send_text = stuck
    await a.send("ping")  # the writer takes this one and blocks
    await asyncio.sleep(0.05)
    from webconnect.realtime.hub import get_hub

    for n in range(10):
        get_hub().deliver_local("chat.slow", 100 + n, '{"header":{"type":"message"},"payload":null}')
    await asyncio.sleep(0.05)
    assert await close_of(a) == {"type": "websocket.close", "code": 4001, "reason": "slow consumer"}
