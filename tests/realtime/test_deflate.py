"""permessage-deflate through live servers: off by default, negotiated and used with WEBSOCKET_DEFLATE.

The client (websockets) offers permessage-deflate on every connection; what the server answers
decides. Server frames are counted by their RSV1 bit, so "compressed" means on the wire, not only
in the handshake.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

from tests.conftest import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)

# 1,000 messages each: 16, 64 and 256 bytes, for every payload kind and every permessage-deflate offer.
CASES = [
    arg
    for group in ("12.1", "12.2", "12.3", "12.4", "12.5", "13.1", "13.2", "13.3", "13.4", "13.5", "13.6", "13.7")
    for size in (1, 2, 3)
    for arg in ("-i", f"{group}.{size}")
]
KOSOKU = shutil.which("kosoku") or str(Path(sys.executable).with_name("kosoku"))

# A dashboard-like reading: repetitive keys, as compression sees them on a real feed.
READING = {
    "sensor": "line1.temp",
    "unit": "celsius",
    "values": [{"t": 1000 + i, "v": 20.5 + i / 10} for i in range(40)],
}


@pytest.fixture
async def token(alice: Any, mint_token: Callable[..., str]) -> str:
    return await sync_to_async(mint_token)("alice", "realtime:read realtime:write")


def count_compressed(ws: ClientConnection) -> list[bool]:
    """RSV1 of every frame the server sends from now on (the deflate extension sees each one)."""
    seen: list[bool] = []
    for extension in ws.protocol.extensions:
        decode = extension.decode

        def recording(frame: Any, *, max_size: int | None = None, _decode: Any = decode) -> Any:
            seen.append(bool(frame.rsv1))
            return _decode(frame, max_size=max_size)

        extension.decode = recording  # type: ignore[method-assign]
    return seen


async def roundtrip(url: str, token: str, subprotocols: list[str] | None = None) -> tuple[ClientConnection, Any]:
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=subprotocols,  # type: ignore[arg-type]
        max_size=None,
    )
    return ws, ws.protocol.extensions


async def exchange_json(ws: ClientConnection) -> dict[str, Any]:
    await ws.send(json.dumps({"header": {"type": "subscribe", "id": "s", "channel": "chat.deflate"}}))
    await ws.send(json.dumps({"header": {"type": "publish", "id": "p", "channel": "chat.deflate"}, "payload": READING}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["header"]["type"] == "message":
            return dict(frame)


async def test_deflate_is_not_negotiated_by_default(live_daphne: LiveServer, token: str) -> None:
    ws, extensions = await roundtrip(f"{live_daphne.ws_url}/ws/", token)
    assert extensions == []  # offered by the client, declined by the server
    frame = await exchange_json(ws)
    assert frame["payload"] == READING
    await ws.close()


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
async def test_with_the_setting_a_compressed_connection_negotiates_and_exchanges(
    live_server_factory: Callable[..., LiveServer], token: str, server: str
) -> None:
    live = await sync_to_async(live_server_factory)(WEBSOCKET_DEFLATE="true", WEBCONNECT_SERVER=server)
    ws, extensions = await roundtrip(f"{live.ws_url}/ws/", token)
    assert [type(e) for e in extensions] == [PerMessageDeflate]
    seen = count_compressed(ws)
    frame = await exchange_json(ws)
    assert frame["payload"] == READING  # the client's compressed publish was inflated, the message deflated
    assert seen and all(seen), "every server frame on the wire is compressed (RSV1)"
    await ws.close()

    # MessagePack binary frames are compressed the same way.
    ws, extensions = await roundtrip(f"{live.ws_url}/ws/", token, ["webconnect.msgpack.v1"])
    assert ws.subprotocol == "webconnect.msgpack.v1" and extensions
    seen = count_compressed(ws)
    await ws.send(msgpack.packb({"header": {"type": "history", "id": "h", "channel": "chat.deflate"}}))
    ack = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
    assert ack["header"]["id"] == "h" and ack["payload"]["messages"][0]["payload"] == READING
    assert seen == [True]
    await ws.close()


@pytest.mark.timeout(600)
def test_compressed_frames_pass_the_autobahn_compression_cases(
    live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """Autobahn's compression cases on the echo route, with our lean send path compressing: what a
    browser's inflater gets is by the book. Every payload kind (12.1-12.5) and every offer (13.1-13.7:
    windows, context takeover) at the three smallest sizes; all 216 cases take over ten minutes here."""
    if not Path(KOSOKU).exists():
        pytest.fail("kosoku is not installed (requirements-dev.txt)")
    server = live_server_factory(WEBSOCKET_DEFLATE="true", REALTIME_ANONYMOUS_MAX_FRAME_BYTES="32768")
    run = subprocess.run(
        [KOSOKU, *CASES, "-p", "4", "-o", str(tmp_path), f"127.0.0.1:{server.port}"],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    reports = list(tmp_path.glob("*_case_*.json"))
    assert len(reports) == len(CASES) // 2, len(reports)
