from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from webconnect.realtime import selectors


@pytest.fixture(autouse=True)
def _fresh_namespaces(request: pytest.FixtureRequest) -> Iterator[None]:
    """Rows installed by data migrations, again: transactional tests flush every table."""
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("transactional_db")
        from django.apps import apps

        for module in (
            "webconnect.migrations.0003_default_namespaces",
            "policies.migrations.0002_default_policies",
            "policies.migrations.0008_default_realtime_limits",
        ):
            with contextlib.suppress(ImportError):
                importlib.import_module(module).install(apps, None)
        try:
            # A new version makes live server processes drop what they cached during the flush.
            from policies import engine, services

            services.policy_version_bump()
            engine.mark_stale()
        except (ImportError, AttributeError):
            pass
    selectors.namespace_cache_clear()
    yield
    selectors.namespace_cache_clear()


class Socket:
    """A WebsocketCommunicator on the real ASGI application, speaking the envelope protocol."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self._next = 0

    async def send(self, kind: str, payload: Any = None, **header: Any) -> str:
        self._next += 1
        frame_id = header.pop("id", f"c{self._next}")
        await self.communicator.send_json_to({"header": {"type": kind, "id": frame_id, **header}, "payload": payload})
        return str(frame_id)

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def recv(self, wait: float = 3) -> dict[str, Any]:
        return dict(await self.communicator.receive_json_from(timeout=wait))

    async def recv_type(self, kind: str, wait: float = 3) -> dict[str, Any]:
        for _ in range(50):
            frame = await self.recv(wait)
            if frame["header"]["type"] == kind:
                return frame
        raise AssertionError(f"no {kind} frame")

    async def call(self, kind: str, payload: Any = None, **header: Any) -> dict[str, Any]:
        """Send a frame and return the ack/response/error answering it."""
        frame_id = await self.send(kind, payload, **header)
        for _ in range(50):
            frame = await self.recv()
            if frame["header"].get("id") == frame_id and frame["header"]["type"] in {
                "ack",
                "response",
                "error",
                "pong",
            }:
                return frame
        raise AssertionError(f"no answer to {frame_id}")

    async def nothing(self, wait: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout=wait)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def open_ws() -> AsyncIterator[Callable[..., Any]]:
    from webconnect.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def open_(headers: list[tuple[bytes, bytes]] | None = None, path: str = "/ws/", expect: bool = True) -> Any:
        communicator = WebsocketCommunicator(application, path, headers=headers or [])
        connected, code = await communicator.connect(timeout=5)
        if not expect:
            return connected, code
        assert connected, f"refused with {code}"
        opened.append(communicator)
        return Socket(communicator)

    yield open_
    for communicator in opened:
        with contextlib.suppress(Exception):  # already closed by the server
            await communicator.disconnect()


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


@pytest.fixture
def token_for(mint_token: Callable[..., str]) -> Callable[..., Any]:
    async def mint(username: str, scopes: str = "realtime:read realtime:write") -> str:
        return str(await sync_to_async(mint_token)(username, scopes))

    return mint


@pytest.fixture
def session_headers() -> Callable[..., Any]:
    async def headers(user: Any) -> list[tuple[bytes, bytes]]:
        client = Client()
        await sync_to_async(client.force_login)(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        return [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)]

    return headers
