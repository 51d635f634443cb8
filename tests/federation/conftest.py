from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from websockets.asyncio.client import connect

from tests.conftest import LiveServer, free_port
from tests.federation.directory import Directory, start_directory


@pytest.fixture(scope="module")
def directory() -> Iterator[Directory]:
    found = start_directory(free_port())
    yield found
    found.stop()


def form_sign_in(server: LiveServer, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Sign in through the real sign-in form, as a browser would post it."""
    session = requests.Session()
    page = session.get(f"{server.url}/accounts/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf is not None, page.text[:300]
    response = session.post(
        f"{server.url}/accounts/login/",
        data={"csrfmiddlewaretoken": csrf.group(1), "username": username, "password": password},
        headers={"Referer": f"{server.url}/accounts/login/"},
        timeout=30,
    )
    return session, response


def form_errors(response: requests.Response) -> str:
    """The text of the form's error box."""
    found = re.search(r'<div class="form-errors" role="alert">(.*?)</div>', response.text, re.S)
    return re.sub(r"<[^>]+>", " ", found.group(1)).strip() if found else ""


def ws_subscribe(server: LiveServer, channel: str, *, cookie: str = "", token: str = "") -> dict[str, Any]:
    """Open /ws/ (with a session cookie and the server's Origin, or a bearer token) and subscribe once."""

    async def run() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {"Cookie": cookie}
        origin = None if token else server.url
        async with connect(f"{server.ws_url}/ws/", additional_headers=headers, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"header": {"type": "subscribe", "id": "s1", "channel": channel}, "payload": {}}))
            for _ in range(20):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["header"].get("id") == "s1":
                    return dict(frame)
        raise AssertionError("no answer to the subscribe")

    return asyncio.run(run())
