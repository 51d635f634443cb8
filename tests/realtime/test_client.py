"""The Python client and its CLI against a live Daphne process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from webconnect_client import Client, ServerError

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def tokens(alice: Any, bob: Any, mint_token: Callable[..., str]) -> dict[str, str]:
    mint = sync_to_async(mint_token)
    return {
        "alice": await mint("alice", "realtime:read realtime:write"),
        "bob": await mint("bob", "realtime:read realtime:write"),
    }


async def test_the_client_speaks_every_frame_type(live_daphne: Any, tokens: dict[str, str], alice: Any) -> None:
    url = f"{live_daphne.ws_url}/ws/"
    async with Client(url, token=tokens["alice"]) as a, Client(url, token=tokens["bob"]) as b:
        sub = await b.subscribe("chat.client")
        ack = await a.publish("chat.client", {"text": "hi"})
        assert ack["offset"] >= 1
        message = await sub.get(timeout=5)
        assert message.payload == {"text": "hi"} and message.sender["user_id"] == alice.pk
        assert await a.request("echo", {"x": 1}, timeout=5) == {"x": 1}
        with pytest.raises(ServerError) as info:
            await a.request("missing", timeout=5)
        assert info.value.code == "not_found"
        assert [c["name"] for c in await a.presence("chat.client")] == ["bob"]
        assert (await a.history("chat.client", 5))["messages"][-1]["payload"] == {"text": "hi"}
        assert await a.ping() > 0
        with pytest.raises(ServerError):
            await a.publish("nope.x", 1)


async def test_the_client_recovers_after_a_drop_without_gap_or_duplicate(
    live_daphne: Any, tokens: dict[str, str]
) -> None:
    url = f"{live_daphne.ws_url}/ws/"
    received: list[int] = []
    async with (
        Client(url, token=tokens["alice"]) as publisher,
        Client(url, token=tokens["bob"], backoff_base=0.05, backoff_max=0.2) as b,
    ):
        await b.subscribe("chat.drop", lambda m: received.append(m.payload["n"]))
        for n in range(3):
            await publisher.publish("chat.drop", {"n": n})
        for _ in range(50):
            if len(received) == 3:
                break
            await asyncio.sleep(0.05)
        assert b._ws is not None
        await b._ws.close()  # the network drops; the client was not asked to close
        for n in range(3, 8):
            await publisher.publish("chat.drop", {"n": n})
        await b.wait_connected(timeout=5)
        await publisher.publish("chat.drop", {"n": 8})
        for _ in range(100):
            if len(received) >= 9:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    assert received == list(range(9))
    assert b.subscriptions["chat.drop"].recovered is True


async def test_a_ticket_connects_once(live_daphne: Any, tokens: dict[str, str]) -> None:
    import urllib.request

    def mint_ticket() -> str:
        request = urllib.request.Request(  # noqa: S310 - a fixed http://127.0.0.1 URL
            f"{live_daphne.url}/api/realtime/tickets/",
            method="POST",
            headers={"Authorization": f"Bearer {tokens['alice']}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return str(json.loads(response.read())["ticket"])

    ticket = await asyncio.to_thread(mint_ticket)
    url = f"{live_daphne.ws_url}/ws/"
    async with Client(url, ticket=ticket, reconnect=False) as client:
        assert await client.request("echo", 1, timeout=5) == 1
    with pytest.raises(Exception, match="403"):
        await Client(url, ticket=ticket, reconnect=False).connect()


def _cli(live: Any, token: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webconnect_client", "--url", f"{live.ws_url}/ws/", "--token", token, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


async def test_the_cli(live_daphne: Any, tokens: dict[str, str]) -> None:
    subscriber = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webconnect_client",
        "--url",
        f"{live_daphne.ws_url}/ws/",
        "--token",
        tokens["bob"],
        "--trace",
        "subscribe",
        "chat.cli",
        "--count",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(100):  # wait until the subscriber is in the channel
            presence = await asyncio.to_thread(_cli, live_daphne, tokens["alice"], "presence", "chat.cli")
            if "bob" in presence.stdout:
                break
            await asyncio.sleep(0.1)
        published = await asyncio.to_thread(_cli, live_daphne, tokens["alice"], "publish", "chat.cli", '{"a": 1}')
        assert published.returncode == 0 and json.loads(published.stdout)["offset"] >= 1
        stdout, stderr = await asyncio.wait_for(subscriber.communicate(), 20)
    finally:
        if subscriber.returncode is None:
            subscriber.kill()
            await subscriber.wait()
    assert subscriber.returncode == 0, f"subscriber exited {subscriber.returncode}: {stderr.decode()[-2000:]}"
    line = json.loads(stdout.decode().strip())
    assert line["payload"] == {"a": 1} and line["from"]["name"] == "alice"
    assert " > " in stderr.decode() and " < " in stderr.decode() and " ms " in stderr.decode()
    response = await asyncio.to_thread(_cli, live_daphne, tokens["alice"], "request", "echo", '{"b": 2}')
    assert json.loads(response.stdout) == {"b": 2}
    denied = await asyncio.to_thread(_cli, live_daphne, tokens["alice"], "publish", "nope.x", "1")
    assert denied.returncode == 2 and "not_found" in denied.stderr
