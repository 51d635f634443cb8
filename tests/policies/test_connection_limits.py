"""Concurrent-connection limits per user and per IP, administered as ConnectionLimitPolicy rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from policies.models import ConnectionLimitPolicy
from webconnect.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(token: str) -> tuple[WebsocketCommunicator, dict[str, Any] | None]:
    """Connect; returns the socket and the error frame if the server turned it away."""
    communicator = WebsocketCommunicator(application, "/ws/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"header": {"type": "ping", "id": "p"}, "payload": None})
    frame = await communicator.receive_json_from(timeout=5)
    if frame["header"]["type"] == "error":
        return communicator, frame["payload"]
    return communicator, None


async def test_a_user_s_sockets_beyond_the_limit_are_refused_with_a_reason(
    alice: Any, bob: Any, mint_token: Callable[..., str]
) -> None:
    await sync_to_async(ConnectionLimitPolicy.objects.create)(name="two-per-user", scope="user", max_connections=2)
    alice_token = await sync_to_async(mint_token)("alice", "realtime:read")
    bob_token = await sync_to_async(mint_token)("bob", "realtime:read")

    first, refused = await open_socket(alice_token)
    assert refused is None
    second, refused = await open_socket(alice_token)
    assert refused is None
    third, refused = await open_socket(alice_token)
    assert refused is not None and refused["code"] == "rate_limited"
    assert "2 connections per user" in refused["message"] and refused["retry_after"] > 0
    close = await third.receive_output(timeout=5)
    while close["type"] != "websocket.close":
        close = await third.receive_output(timeout=5)
    assert close["code"] == 4429

    other, refused = await open_socket(bob_token)  # the limit is per user
    assert refused is None

    await first.disconnect()  # a closed socket gives its place back
    fourth, refused = await open_socket(alice_token)
    assert refused is None
    for socket in (second, other, fourth):
        await socket.disconnect()


async def test_a_disabled_policy_limits_nothing(alice: Any, mint_token: Callable[..., str]) -> None:
    await sync_to_async(ConnectionLimitPolicy.objects.create)(
        name="off", scope="user", max_connections=1, enabled=False
    )
    token = await sync_to_async(mint_token)("alice", "realtime:read")
    sockets = [await open_socket(token) for _ in range(3)]
    assert all(refused is None for _, refused in sockets)
    for socket, _ in sockets:
        await socket.disconnect()


def test_zero_connections_is_a_form_error(client: Any, admin_user: Any) -> None:
    client.force_login(admin_user)
    response = client.post(
        "/admin/policies/connectionlimitpolicy/add/", {"name": "none", "scope": "ip", "max_connections": "0"}
    )
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1" in response.content.decode()
    assert not ConnectionLimitPolicy.objects.filter(name="none").exists()  # the defaults aside


async def first_frame(url: str, token: str) -> tuple[Any, dict[str, Any]]:
    socket = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    await socket.send(json.dumps({"header": {"type": "ping", "id": "p"}, "payload": None}))
    return socket, json.loads(await asyncio.wait_for(socket.recv(), 5))


@pytest.mark.services
async def test_processes_sharing_redis_share_one_count_per_ip(
    live_server_factory: Callable[..., Any], alice: Any, bob: Any, mint_token: Callable[..., str]
) -> None:
    await sync_to_async(ConnectionLimitPolicy.objects.create)(name="one-per-ip", scope="ip", max_connections=1)
    server_a, server_b = await sync_to_async(live_server_factory)(), await sync_to_async(live_server_factory)()
    alice_token = await sync_to_async(mint_token)("alice", "realtime:read")
    bob_token = await sync_to_async(mint_token)("bob", "realtime:read")

    held, frame = await first_frame(f"{server_a.ws_url}/ws/", alice_token)
    assert frame["header"]["type"] == "pong"
    refused, frame = await first_frame(f"{server_b.ws_url}/ws/", bob_token)  # same IP, other process
    assert frame["header"]["type"] == "error" and frame["payload"]["code"] == "rate_limited"
    await refused.close()
    await held.close()
    await asyncio.sleep(0.5)  # the release travels to Redis as the socket closes
    again, frame = await first_frame(f"{server_b.ws_url}/ws/", bob_token)
    assert frame["header"]["type"] == "pong"
    await again.close()
