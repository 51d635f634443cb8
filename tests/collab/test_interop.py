"""Interoperability: Node's stock y-websocket provider and a Python client meet through a live Daphne."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from collab import protocol, services
from tests.collab.yclient import RawClient
from tests.conftest import ROOT, LiveServer

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

NODE_MODULES = ROOT / "frontend" / "node_modules"
SCRIPT = Path(__file__).with_name("interop.cjs")
# CI must run the Node tests: there a missing Node fails them instead of skipping them.
REQUIRE_NODE = any(
    os.environ.get(name, "").lower() in {"1", "true", "yes"}
    for name in ("WEBCONNECT_REQUIRE_NODE", "CI", "WEBCONNECT_REQUIRE_SERVICES")
)


def require_node() -> None:
    if shutil.which("node") is None:
        message = "Node is not installed (node and npm are needed for the Node interop tests)"
        if REQUIRE_NODE:
            pytest.fail(
                f"{message}, and this is CI (CI / WEBCONNECT_REQUIRE_*): a skipped Node test fails", pytrace=False
            )
        pytest.skip(message)
    if not (NODE_MODULES / "y-websocket").is_dir():
        pytest.fail(
            "frontend/node_modules is missing: `make test` installs it from the lockfile "
            "(or run `cd frontend && npm ci`)",
            pytrace=False,
        )


# A missing Node or node_modules is certain, not a timing miss: never re-run it.
@pytest.mark.flaky(reruns=2, reruns_delay=1, rerun_except="Node is not installed|node_modules is missing")
async def test_nodes_stock_websocket_provider_syncs_with_a_python_client(
    live_daphne: LiveServer, alice: Any, mint_token: Callable[..., str]
) -> None:
    require_node()
    document = await sync_to_async(services.document_create)(owner=alice, title="Interop")
    token = await sync_to_async(mint_token)("alice", "docs:read docs:write")
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(f"{live_daphne.ws_url}/ws/docs/{document.pk}", additional_headers=headers) as ws:
        python = RawClient(ws)
        await ws.send(protocol.sync_step1(python.doc.get_state()))
        await python.run_until(lambda: python.synced)
        await python.insert("from python")
        node = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            live_daphne.ws_url,
            str(document.pk),
            token,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await python.run_until(lambda: "from node" in str(python.text))
            # Node announced itself ("node"): its awareness state reached us through the server,
            # under the name of the user it authenticated as (the server writes `user`).
            await python.run_until(
                lambda: any(
                    s.get("user") == {"name": "alice", "id": alice.pk, "color": "#123456"}
                    for s in python.awareness.states.values()
                )
            )
            await python.insert(" python-ack")
            async with asyncio.timeout(25):
                stdout, stderr = await node.communicate()
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
    assert node.returncode == 0, stderr.decode()
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    assert result["ok"] and result["synced"], (stdout, stderr)
    assert result["text"] == "from python from node python-ack" == str(python.text)
