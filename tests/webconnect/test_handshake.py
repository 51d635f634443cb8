"""WebSocket handshake: session cookie only from an allowed Origin, bearer tokens without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import path

from webconnect.handshake import HandshakeAuthMiddleware

pytestmark = pytest.mark.django_db(transaction=True)


class WhoAmIConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()
        auth = self.scope["auth"]
        await self.send_json(
            {
                "user": self.scope["user"].get_username(),
                "method": auth.method,
                "scopes": sorted(auth.scopes) if auth.scopes is not None else None,
            }
        )


application = HandshakeAuthMiddleware(URLRouter([path("ws/whoami/", WhoAmIConsumer.as_asgi())]))


async def open_socket(headers: list[tuple[bytes, bytes]]) -> tuple[bool, Any, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(application, "/ws/whoami/", headers=headers)
    connected, code = await communicator.connect()
    if connected:
        return True, await communicator.receive_json_from(), communicator
    return False, code, communicator


@pytest.fixture
def session_cookie(alice: Any) -> bytes:
    client = Client()
    client.force_login(alice)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_a_browser_session_from_the_same_origin_is_accepted(session_cookie: bytes) -> None:
    ok, hello, communicator = await open_socket(
        [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"), (b"cookie", session_cookie)]
    )
    assert ok and hello == {"user": "alice", "method": "session", "scopes": None}
    await communicator.disconnect()


@pytest.mark.parametrize(
    "origin", [b"https://evil.example", b"https://127.0.0.1:8000", b"http://127.0.0.1:9999", b"null"]
)
async def test_a_valid_cookie_from_a_foreign_origin_is_refused(session_cookie: bytes, origin: bytes) -> None:
    ok, code, _ = await open_socket([(b"host", b"127.0.0.1:8000"), (b"origin", origin), (b"cookie", session_cookie)])
    assert not ok and code == 4403


async def test_a_cookie_without_an_origin_is_refused(session_cookie: bytes) -> None:
    ok, code, _ = await open_socket([(b"host", b"127.0.0.1:8000"), (b"cookie", session_cookie)])
    assert code == 4403
    assert not ok


async def test_configured_origins_are_allowed(session_cookie: bytes, settings: Any) -> None:
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["https://app.example.com"]
    ok, hello, communicator = await open_socket(
        [(b"host", b"api.example.com"), (b"origin", b"https://app.example.com"), (b"cookie", session_cookie)]
    )
    assert ok and hello["user"] == "alice"
    await communicator.disconnect()


async def test_a_bearer_token_needs_no_origin_and_ignores_cookies(
    alice: Any, bob: Any, mint_token: Callable[..., str]
) -> None:
    token = await sync_to_async(mint_token)("bob", "realtime:read")
    client = Client()
    await sync_to_async(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ok, hello, communicator = await open_socket([(b"authorization", f"Bearer {token}".encode()), (b"cookie", cookie)])
    assert ok and hello == {"user": "bob", "method": "bearer", "scopes": ["realtime:read"]}
    await communicator.disconnect()


async def test_an_invalid_bearer_token_is_refused() -> None:
    ok, code, _ = await open_socket([(b"authorization", b"Bearer not-a-token")])
    assert not ok and code == 4403


async def test_no_credentials_means_anonymous() -> None:
    ok, hello, communicator = await open_socket([])
    assert ok and hello == {"user": "", "method": "anonymous", "scopes": ["realtime:read"]}
    await communicator.disconnect()
