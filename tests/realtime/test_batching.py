"""Batching (the `webconnect.json.batch.v1` subprotocol) through a live server: a client that
negotiated it may get several envelopes per frame, one per line, in order; anyone else gets one
envelope per frame, exactly as before."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from webconnect_client import Client
from websockets.asyncio.client import ClientConnection, connect

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = "webconnect.json.batch.v1"


@pytest.fixture
async def token(alice: Any, mint_token: Callable[..., str]) -> str:
    return await sync_to_async(mint_token)("alice", "realtime:read realtime:write")


async def frames_until(ws: ClientConnection, count: int) -> list[str]:
    """Raw frames until `count` messages have arrived (other envelopes, such as a join, may come too)."""
    frames: list[str] = []
    while sum(frame.count('"type":"message"') for frame in frames) < count:
        frames.append(str(await asyncio.wait_for(ws.recv(), 5)))
    return frames


def messages(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in envelopes if e["header"]["type"] == "message"]


async def publish(url: str, token: str, channel: str, count: int) -> str:
    """Publish `count` messages and return the channel's epoch."""
    async with Client(url, token=token) as publisher:
        for n in range(count):
            ack = await publisher.publish(channel, {"n": n})
    return str(ack["epoch"])


async def recover(url: str, token: str, channel: str, epoch: str, subprotocols: list[str] | None) -> ClientConnection:
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=subprotocols,  # type: ignore[arg-type]
    )
    since = {"offset": 0, "epoch": epoch}
    await ws.send(
        json.dumps({"header": {"type": "subscribe", "id": "s", "channel": channel}, "payload": {"since": since}})
    )
    return ws


async def test_a_batching_client_gets_the_ack_and_recovered_messages_in_one_frame_in_order(
    live_daphne: Any, token: str
) -> None:
    url = f"{live_daphne.ws_url}/ws/"
    epoch = await publish(url, token, "chat.batch", 20)
    ws = await recover(url, token, "chat.batch", epoch, [BATCH])
    assert ws.subprotocol == BATCH
    frames = await frames_until(ws, 20)
    envelopes = [json.loads(line) for frame in frames for line in frame.split("\n")]
    assert envelopes[0]["header"]["type"] == "ack" and envelopes[0]["payload"]["recovered"] is True
    assert [e["header"]["offset"] for e in messages(envelopes)] == list(range(1, 21))
    assert [e["payload"]["n"] for e in messages(envelopes)] == list(range(20))
    # Queued together (no await between them on the server): fewer frames than envelopes.
    assert len(frames) < len(envelopes)
    await ws.close()


async def test_a_client_that_did_not_negotiate_gets_one_envelope_per_frame(live_daphne: Any, token: str) -> None:
    url = f"{live_daphne.ws_url}/ws/"
    epoch = await publish(url, token, "chat.single", 20)
    for offered in (None, ["some.other.protocol"]):
        ws = await recover(url, token, "chat.single", epoch, offered)
        assert ws.subprotocol is None
        frames = await frames_until(ws, 20)
        assert all("\n" not in frame for frame in frames)
        envelopes = [json.loads(frame) for frame in frames]  # one envelope per frame, or this fails
        assert envelopes[0]["header"]["type"] == "ack"
        assert [e["header"]["offset"] for e in messages(envelopes)] == list(range(1, 21))
        await ws.close()


async def test_the_python_client_with_batch_receives_every_message_in_order(live_daphne: Any, token: str) -> None:
    url = f"{live_daphne.ws_url}/ws/"
    received: list[int] = []
    async with Client(url, token=token, batch=True) as reader, Client(url, token=token) as writer:
        assert reader.batching and not writer.batching
        await reader.subscribe("chat.pybatch", lambda m: received.append(m.payload["n"]))
        await asyncio.gather(*(writer.publish("chat.pybatch", {"n": n}) for n in range(50)))
        for _ in range(100):
            if len(received) == 50:
                break
            await asyncio.sleep(0.05)
    assert sorted(received) == list(range(50)) and len(received) == 50
