"""Services tier: two live Daphne processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from webconnect_client import Client

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def two_servers(live_server_factory: Callable[..., Any]) -> tuple[Any, Any]:
    # A short presence TTL so the test of a dead process does not wait long.
    return live_server_factory(REALTIME_PRESENCE_TTL="3"), live_server_factory(REALTIME_PRESENCE_TTL="3")


@pytest.fixture
async def tokens(alice: Any, bob: Any, mint_token: Callable[..., str]) -> dict[str, str]:
    mint = sync_to_async(mint_token)
    return {name: await mint(name, "realtime:read realtime:write") for name in ("alice", "bob")}


async def _eventually(check: Callable[[], Any], seconds: float = 10) -> Any:
    for _ in range(int(seconds / 0.1)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_a_message_crosses_processes(two_servers: tuple[Any, Any], tokens: dict[str, str]) -> None:
    one, two = two_servers
    async with (
        Client(f"{one.ws_url}/ws/", token=tokens["alice"]) as a,
        Client(f"{two.ws_url}/ws/", token=tokens["bob"]) as b,
    ):
        sub = await b.subscribe("chat.cluster")
        ack = await a.publish("chat.cluster", {"hello": "two"})
        message = await sub.get(timeout=5)
        assert message.payload == {"hello": "two"} and message.offset == ack["offset"]
        assert message.epoch == ack["epoch"]
        # Offsets are per channel across processes: a publish on the other process continues them.
        ack2 = await b.publish("chat.cluster", {"hello": "one"})
        assert ack2["offset"] == ack["offset"] + 1


async def test_presence_across_two_processes_and_a_dead_process_expires(
    live_server_factory: Callable[..., Any], two_servers: tuple[Any, Any], tokens: dict[str, str], alice: Any
) -> None:
    one, _ = two_servers
    doomed = live_server_factory(REALTIME_PRESENCE_TTL="3")
    async with Client(f"{one.ws_url}/ws/", token=tokens["alice"]) as a:
        await a.subscribe("chat.pres")
        b = Client(f"{doomed.ws_url}/ws/", token=tokens["bob"], reconnect=False)
        await b.connect()
        await b.subscribe("chat.pres")
        clients = await a.presence("chat.pres")
        assert sorted(c["name"] for c in clients) == ["alice", "bob"]
        doomed.process.kill()  # no clean-up: its entries must expire on their own
        doomed.process.wait(timeout=10)

        async def only_alice() -> bool:
            return [c["name"] for c in await a.presence("chat.pres")] == ["alice"]

        await _eventually(only_alice, seconds=15)
        await b.close()


async def test_recovery_from_redis_history_on_another_process(
    two_servers: tuple[Any, Any], tokens: dict[str, str]
) -> None:
    one, two = two_servers
    async with Client(f"{one.ws_url}/ws/", token=tokens["alice"]) as a:
        first = await a.publish("chat.streams", {"n": 0})
        for n in range(1, 5):
            await a.publish("chat.streams", {"n": n})
        async with Client(f"{two.ws_url}/ws/", token=tokens["bob"]) as b:
            sub = await b.subscribe("chat.streams", since=(first["offset"], first["epoch"]))
            assert sub.recovered is True
            assert [(await sub.get(timeout=5)).payload["n"] for _ in range(4)] == [1, 2, 3, 4]
            gap = await b.subscribe("chat.streams2", since=(3, "stale-epoch"))
            assert gap.recovered is False


async def test_rest_publish_reaches_sockets_on_every_process(
    two_servers: tuple[Any, Any], tokens: dict[str, str]
) -> None:
    one, two = two_servers
    async with Client(f"{two.ws_url}/ws/", token=tokens["bob"]) as b:
        sub = await b.subscribe("chat.rest")

        def post() -> dict[str, Any]:
            request = urllib.request.Request(  # noqa: S310 - fixed local URL
                f"{one.url}/api/channels/chat.rest/publish/",
                data=b'{"via": "rest"}',
                method="POST",
                headers={"Authorization": f"Bearer {tokens['alice']}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return dict(json.loads(response.read()))

        result = await asyncio.to_thread(post)
        message = await sub.get(timeout=5)
        assert message.payload == {"via": "rest"} and message.offset == result["offset"]


async def test_revoking_a_token_closes_its_socket_on_another_process(
    two_servers: tuple[Any, Any], tokens: dict[str, str]
) -> None:
    from oauth2_provider.models import AccessToken

    _, two = two_servers
    client = Client(f"{two.ws_url}/ws/", token=tokens["bob"], reconnect=False)
    await client.connect()
    await client.ping()
    token = await AccessToken.objects.select_related("user").filter(user__username="bob").afirst()
    assert token is not None
    await sync_to_async(token.revoke)()

    async def closed() -> bool:
        return client.close_code is not None

    await _eventually(closed)
    assert client.close_code == 4002 and client.close_reason == "token revoked"
    await client.close()


async def test_metrics_add_up_across_processes_in_multiprocess_mode(
    live_server_factory: Callable[..., Any], tokens: dict[str, str], admin_user: Any, mint_token: Callable[..., str]
) -> None:
    import tempfile

    shared = tempfile.mkdtemp(prefix="webconnect-prom-")
    one = live_server_factory(PROMETHEUS_MULTIPROC_DIR=shared)
    two = live_server_factory(PROMETHEUS_MULTIPROC_DIR=shared)
    staff_token = await sync_to_async(mint_token)("root", "realtime:read")
    async with (
        Client(f"{one.ws_url}/ws/", token=tokens["alice"]) as a,
        Client(f"{two.ws_url}/ws/", token=tokens["bob"]) as b,
    ):
        await a.ping()
        await b.ping()

        def scrape() -> str:
            request = urllib.request.Request(  # noqa: S310 - fixed local URL
                f"{one.url}/metrics", headers={"Authorization": f"Bearer {staff_token}"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return str(response.read().decode())

        text = await asyncio.to_thread(scrape)
    lines = [line for line in text.splitlines() if line.startswith("webconnect_realtime_connections")]
    assert lines and float(lines[0].split()[-1]) == 2.0, lines
    one.stop()
    two.stop()
