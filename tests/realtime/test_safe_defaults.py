"""Safe defaults of a production install: nothing anonymous unless asked for, limits installed."""

from __future__ import annotations

import asyncio
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
