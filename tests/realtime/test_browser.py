"""A page (session cookie, static/js/realtime.js) and a program (token, Python client) share a channel."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from webconnect_client import Client

from tests.conftest import PASSWORD, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_page_and_a_program_exchange_messages(
    page: Any, live_daphne: LiveServer, make_user: Any, mint_token: Any
) -> None:
    make_user("pat")
    make_user("robot")
    token = mint_token("robot", "realtime:read realtime:write")
    page.goto(f"{live_daphne.url}/accounts/login/")
    page.fill("#id_username", "pat")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_daphne.url}/")
    page.add_script_tag(url="/static/js/realtime.js")
    page.evaluate(
        """async () => {
            window.got = [];
            window.rt = new WebconnectRealtime("/ws/");
            await window.rt.connect();
            await window.rt.subscribe("chat.bridge", (m) => window.got.push(m));
        }"""
    )

    async def program() -> dict[str, Any]:
        async with Client(f"{live_daphne.ws_url}/ws/", token=token) as client:
            sub = await client.subscribe("chat.bridge")
            await client.publish("chat.bridge", {"from": "program"})
            # The page answers; its message reaches the program (its own comes first).
            message = await sub.get(timeout=15)
            while message.payload.get("from") != "page":
                message = await sub.get(timeout=15)
            return {"payload": message.payload, "sender": message.sender}

    # Playwright's sync API owns this thread's event loop: run the program in another thread.
    result: dict[str, Any] = {}

    def run_program() -> None:
        result.update(asyncio.run(program()))

    thread = threading.Thread(target=run_program)
    thread.start()
    page.wait_for_function("window.got.some((m) => m.payload.from === 'program')", timeout=15_000)
    received = page.evaluate("window.got.find((m) => m.payload.from === 'program')")
    assert received["from"]["name"] == "robot" and received["offset"] >= 1
    page.evaluate("() => window.rt.publish('chat.bridge', {from: 'page'})")
    thread.join(timeout=20)
    assert result["payload"] == {"from": "page"} and result["sender"]["name"] == "pat"
    assert page.evaluate("window.rt.presence('chat.bridge')") is not None
