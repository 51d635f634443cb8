"""Safe defaults of a production install: nothing anonymous unless asked for, limits installed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connection

from tests.conftest import ROOT, LiveServer
from webconnect.models import Namespace

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args: str) -> str:
    """Run manage.py as a real process on the test database."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["WEBCONNECT_TEST_DATABASE_NAME"] = str(connection.settings_dict["NAME"])
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


async def anonymous_outcome(server: LiveServer) -> str:
    """'open' if an anonymous /ws/ socket answers a ping, else how it was refused."""
    try:
        async with websockets.connect(f"{server.ws_url}/ws/") as ws:
            await ws.send('{"header": {"type": "ping", "id": "p"}}')
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if frame["header"]["type"] == "pong":
                    return "open"
    except websockets.ConnectionClosed as closed:
        return f"closed {closed.rcvd.code if closed.rcvd else None}"
    except websockets.InvalidStatus as refused:
        return f"status {refused.response.status_code}"


async def test_a_production_install_accepts_no_anonymous_socket_until_demo_data_is_asked_for(
    alice: Any, live_server_factory: Callable[..., LiveServer], mint_token: Callable[..., str]
) -> None:
    out = await sync_to_async(manage)("bootstrap")  # DEBUG is off, no --demo
    assert "demo" not in out.lower()
    server = await sync_to_async(live_server_factory)()  # a fresh process: its first request starts the tasks
    token = await sync_to_async(mint_token)("alice", "realtime:read")
    async with websockets.connect(f"{server.ws_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}):
        await asyncio.sleep(2)  # the background tasks (the ops figures among them) are running now
    assert not await sync_to_async(Namespace.objects.filter(anonymous_read=True).exists)()
    assert await sync_to_async(Namespace.objects.filter(name="sys").exists)()
    # Refused before accept (code 4401), which Daphne answers as HTTP 403.
    assert await anonymous_outcome(server) in {"status 403", "closed 4401"}

    out = await sync_to_async(manage)("bootstrap", "--demo")  # what `make run` does
    assert "readable without signing in" in out
    assert await sync_to_async(Namespace.objects.filter(name="demo", anonymous_read=True).exists)()
    assert await anonymous_outcome(server) == "open"


async def test_default_limits_are_installed_and_editable_in_the_admin(admin_user: Any) -> None:
    from django.test import Client

    from policies.models import ConnectionLimitPolicy, RateLimitPolicy

    sockets = await sync_to_async(lambda: dict(ConnectionLimitPolicy.objects.values_list("name", "max_connections")))()
    assert sockets == {"default-sockets-per-user": 100, "default-sockets-per-ip": 300}
    rates = await sync_to_async(
        lambda: list(
            RateLimitPolicy.objects.filter(actions="publish").values_list("name", "scope", "actions", "limits")
        )
    )()
    assert sorted(rates) == [
        ("default-publish-per-channel", "channel", "publish", "500/second"),
        ("default-publish-per-user", "user", "publish", "50/second;1500/minute"),
    ]
    client = Client()
    await sync_to_async(client.force_login)(admin_user)
    policy = await sync_to_async(RateLimitPolicy.objects.get)(name="default-publish-per-user")
    page = await sync_to_async(client.get)(f"/admin/policies/ratelimitpolicy/{policy.pk}/change/")
    assert page.status_code == 200 and "50/second;1500/minute" in page.content.decode()


async def test_a_flood_of_publishes_from_one_user_is_rate_limited_by_default(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from tests.realtime.conftest import bearer

    a = await open_ws(bearer(await token_for("alice")))
    for n in range(80):
        await a.send("publish", {"n": n}, channel="chat.flood", id=f"f{n}")
    answers = [await a.recv() for _ in range(80)]
    codes = [f["payload"]["code"] if f["header"]["type"] == "error" else "ok" for f in answers]
    assert codes.count("ok") == 50 and codes.count("rate_limited") == 30, codes
    refused = next(f for f in answers if f["header"]["type"] == "error")
    assert "50 per 1 second" in refused["payload"]["message"] and refused["payload"]["retry_after"] > 0
    assert (await a.call("ping"))["header"]["type"] == "pong"  # the socket stays usable


async def test_an_anonymous_socket_gets_a_small_frame_limit(
    alice: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from django.conf import settings

    from tests.realtime.conftest import bearer

    await sync_to_async(Namespace.objects.create)(name="public", anonymous_read=True, client_publish=False)
    limit = settings.REALTIME_ANONYMOUS_MAX_FRAME_BYTES
    assert limit == 4096
    signed_in = await open_ws(bearer(await token_for("alice")))
    padding = "x" * (limit + 100)
    answer = await signed_in.call("subscribe", {"pad": padding}, channel="public.news")
    assert answer["header"]["type"] == "ack"  # the ordinary limit (64 KiB) for an authenticated socket

    anonymous = await open_ws()
    answer = await anonymous.call("subscribe", {"pad": "x" * (limit - 200)}, channel="public.news")
    assert answer["header"]["type"] == "ack"
    await anonymous.send("history", {"pad": padding}, channel="public.news")
    closing = await anonymous.recv()
    assert closing["header"]["type"] == "close" and closing["payload"]["code"] == 4413
    assert f"{limit} bytes" in closing["payload"]["reason"]


async def test_refused_publishes_do_not_spend_the_channel_budget_of_everybody_else(
    alice: Any, bob: Any, open_ws: Callable[..., Any], token_for: Any
) -> None:
    from policies.models import RateLimitPolicy
    from tests.realtime.conftest import bearer

    await sync_to_async(RateLimitPolicy.objects.all().delete)()
    # "a-..." sorts first: the channel's limit is looked at before the user's.
    await sync_to_async(RateLimitPolicy.objects.create)(
        name="a-channel", scope="channel", actions="publish", limits="30/minute"
    )
    await sync_to_async(RateLimitPolicy.objects.create)(
        name="b-user", scope="user", actions="publish", limits="5/minute"
    )

    async def publish(socket: Any, count: int) -> list[str]:
        for n in range(count):
            await socket.send("publish", {"n": n}, channel="chat.budget", id=f"p{n}")
        answers = [await socket.recv() for _ in range(count)]
        return [f["payload"]["code"] if f["header"]["type"] == "error" else "ok" for f in answers]

    flooder = await open_ws(bearer(await token_for("alice")))
    assert (await publish(flooder, 40)).count("ok") == 5
    other = await open_ws(bearer(await token_for("bob")))
    assert (await publish(other, 5)).count("ok") == 5  # 10 of the channel's 30 used, not 45


async def test_a_socket_without_credentials_cannot_send_large_messages_to_the_server(
    alice: Any, live_daphne: LiveServer, mint_token: Callable[..., str]
) -> None:
    from django.conf import settings

    await sync_to_async(Namespace.objects.create)(name="public", anonymous_read=True, client_publish=False)
    limit = settings.REALTIME_ANONYMOUS_MAX_FRAME_BYTES
    url = f"{live_daphne.ws_url}/ws/"

    def subscribe(pad: int) -> str:
        return json.dumps(
            {"header": {"type": "subscribe", "channel": "public.x", "id": "s"}, "payload": {"p": "x" * pad}}
        )

    async def outcome(ws: Any) -> str:
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if frame["header"]["type"] in {"ack", "close"}:
                    kind = frame["header"]["type"]
                    return "ack" if kind == "ack" else f"close {frame['payload']['code']}"
        except websockets.ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd else None}"

    token = await sync_to_async(mint_token)("alice", "realtime:read")
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(subscribe(50_000))  # signed in: the ordinary 64 KiB limit
        assert await outcome(ws) == "ack"
    async with websockets.connect(url) as ws:
        await ws.send(subscribe(limit + 100))  # over the application's limit: closed with a reason
        assert await outcome(ws) == "close 4413"
    async with websockets.connect(url) as ws:
        # Far over it: the server stops reading at 4x the limit instead of buffering up to 4 MiB.
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(subscribe(500_000))  # under the server-wide 1 MiB frame limit
        # Autobahn fails the connection (1009, or the TCP connection dropped): not the app's 4413.
        assert await outcome(ws) in {"closed 1009", "closed None"}
