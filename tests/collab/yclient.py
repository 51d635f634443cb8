"""y-websocket clients on pycrdt for tests: through a WebsocketCommunicator (YClient) or a real socket (RawClient)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.testing import WebsocketCommunicator
from pycrdt import Awareness, Doc, Text

from collab import protocol
from webconnect.asgi import application


@dataclass
class YClient:
    communicator: WebsocketCommunicator
    doc: Doc[Any] = field(default_factory=Doc)
    denied: str | None = None
    closed_code: int | None = None
    awareness_frames: list[bytes] = field(default_factory=list)
    synced: bool = False

    def __post_init__(self) -> None:
        self.awareness = Awareness(self.doc)
        self._sent_state = self.doc.get_state()

    @property
    def text(self) -> Text:
        return self.doc.get("t", type=Text)

    async def send(self, frame: bytes) -> None:
        await self.communicator.send_to(bytes_data=frame)

    async def start(self) -> None:
        """What a provider does on open: send step 1 (and the answer to the server's step 1 comes in pump)."""
        await self.send(protocol.sync_step1(self.doc.get_state()))

    async def pump(self, wait: float = 0.3, until: Any = None) -> None:
        """Handle incoming frames until `until()` is true or nothing arrives for `timeout` seconds.

        Never lets receive_output time out: that would cancel the application.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while until is None or not until():
            if self.closed_code is not None:
                if until is None:
                    return
                raise AssertionError(f"closed with {self.closed_code} before the condition was reached")
            if await self.communicator.receive_nothing(timeout=0.02, interval=0.005):
                if loop.time() > deadline:
                    if until is None:
                        return
                    raise AssertionError("condition not reached")
                continue
            if until is None:
                deadline = loop.time() + wait
            output = await self.communicator.receive_output(5)
            if output["type"] == "websocket.close":
                self.closed_code = output.get("code")
                return
            message = protocol.parse(output["bytes"])
            if isinstance(message, protocol.SyncStep1):
                await self.send(protocol.sync_step2(self.doc.get_update(message.state_vector)))
            elif isinstance(message, protocol.SyncStep2):
                self.doc.apply_update(message.update)
                self.synced = True
            elif isinstance(message, protocol.SyncUpdate):
                self.doc.apply_update(message.update)
            elif isinstance(message, protocol.AwarenessUpdate):
                self.awareness_frames.append(message.payload)
                self.awareness.apply_awareness_update(message.payload, origin="server")
            elif isinstance(message, protocol.AuthMessage):
                self.denied = message.reason

    async def edit(self, text: str, index: int | None = None) -> bytes:
        before = self.doc.get_state()
        self.text.insert(len(self.text) if index is None else index, text)
        update = self.doc.get_update(before)
        await self.send(protocol.sync_update(update))
        return update

    async def announce(self, state: dict[str, Any] | None) -> None:
        self.awareness.set_local_state(state)
        payload = self.awareness.encode_awareness_update([self.doc.client_id])
        await self.send(protocol.awareness(payload))

    def presence(self) -> dict[int, Any]:
        return dict(self.awareness.states)

    async def close(self) -> None:
        await self.communicator.disconnect()


def awareness_states(payload: bytes) -> list[tuple[int, Any]]:
    reader = protocol._Reader(payload)
    out = []
    for _ in range(reader.var_uint()):
        client_id = reader.var_uint()
        reader.var_uint()
        out.append((client_id, json.loads(reader.var_string() or "null")))
    return out


async def connect(document_id: int, token: str | None, *, start: bool = True) -> YClient:
    headers = [(b"host", b"127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = WebsocketCommunicator(application, f"/ws/docs/{document_id}", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    client = YClient(communicator)
    if start:
        await client.start()
        await client.pump(wait=2, until=lambda: client.synced or client.closed_code is not None)
    return client


class RawClient:
    """pycrdt document + a plain `websockets` connection speaking y-websocket."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.doc: Doc[Any] = Doc()
        self.awareness = Awareness(self.doc)
        self.synced = False

    @property
    def text(self) -> Text:
        return self.doc.get("t", type=Text)

    async def handle(self, frame: bytes) -> None:
        message = protocol.parse(frame)
        if isinstance(message, protocol.SyncStep1):
            await self.socket.send(protocol.sync_step2(self.doc.get_update(message.state_vector)))
        elif isinstance(message, protocol.SyncStep2):
            self.doc.apply_update(message.update)
            self.synced = True
        elif isinstance(message, protocol.SyncUpdate):
            self.doc.apply_update(message.update)
        elif isinstance(message, protocol.AwarenessUpdate):
            self.awareness.apply_awareness_update(message.payload, origin="server")

    async def run_until(self, condition: Callable[[], bool], seconds: float = 20) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                await self.handle(await self.socket.recv())

    async def insert(self, value: str) -> None:
        before = self.doc.get_state()
        self.text.insert(len(self.text), value)
        await self.socket.send(protocol.sync_update(self.doc.get_update(before)))
