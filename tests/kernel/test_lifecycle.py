"""The one session lifecycle, on both endpoints, through real sockets to a live server process.

Each fault of the kernel issue: sign-out, token revocation and token expiry
close a live `/ws/docs/` socket and a `/ws/` socket within a second; a forbid
saved on the same process closes a viewer's document socket; close codes reach
the wire (4413, 4400).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from oauth2_provider.models import get_application_model
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from collab import services as collab_services
from collab.protocol import sync_step1
from policies.services import share_grant
from tests.conftest import LiveServer, signed_in_session
from tests.policies.test_invalidation import _install_namespaces

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def closed_with(ws: ClientConnection, within: float) -> tuple[int | None, str, float]:
    """Read until the server closes: the close code off the wire, the reason it gave, and how long it took.

    Daphne does not pass a close reason on, so the reason is the one the protocol
    carries: /ws/'s last `close` frame, or y-websocket's permission-denied message.
    """
    start = time.monotonic()
    reason = ""
    while time.monotonic() - start < within:
        try:
            message = ws.recv(timeout=max(0.05, within - (time.monotonic() - start)))
        except TimeoutError:
            break
        except ConnectionClosed as closed:
            frame = closed.rcvd
            return (frame.code if frame else None), reason, time.monotonic() - start
        if isinstance(message, str) and '"close"' in message:
            reason = json.loads(message)["payload"]["reason"]
        elif isinstance(message, bytes) and message[:2] == b"\x02\x00":
            reason = message[3:].decode(errors="replace")
    raise AssertionError(f"the socket was still open after {within}s")


def still_open(ws: ClientConnection, for_seconds: float) -> bool:
    try:
        while True:
            ws.recv(timeout=for_seconds)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False


def bearer_socket(server: LiveServer, path: str, token: str) -> ClientConnection:
    ws = connect(f"{server.ws_url}{path}", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    if path.startswith("/ws/docs/"):
        ws.send(sync_step1(b"\x00"))
    return ws


def realtime_socket(server: LiveServer, headers: dict[str, str]) -> ClientConnection:
    ws = connect(f"{server.ws_url}/ws/", additional_headers=headers, open_timeout=10)
    ws.send(json.dumps({"header": {"type": "subscribe", "id": "s", "channel": "chat.lobby"}, "payload": None}))
    while json.loads(ws.recv(timeout=10))["header"].get("id") != "s":
        pass
    return ws


def cookie_headers(server: LiveServer, session: requests.Session) -> dict[str, str]:
    cookie = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    return {"Cookie": cookie, "Origin": server.url}


# Every test runs in both tiers: one process with embedded defaults, and the
# services tier (PostgreSQL + Redis, where the bus is Redis pub/sub).
@pytest.fixture(params=[pytest.param("embedded"), pytest.param("services", marks=pytest.mark.services)])
def server(request: pytest.FixtureRequest, live_daphne: LiveServer) -> LiveServer:
    _install_namespaces()
    return live_daphne


@pytest.fixture
def document(alice: Any) -> Any:
    return collab_services.document_create(owner=alice, title="Kernel")


@pytest.fixture
def both_sockets() -> Iterator[list[ClientConnection]]:
    opened: list[ClientConnection] = []
    yield opened
    for ws in opened:
        ws.close()


def test_signing_out_closes_the_users_document_and_realtime_sockets_within_a_second(
    server: LiveServer, alice: Any, document: Any, both_sockets: list[ClientConnection]
) -> None:
    browser = signed_in_session(server, "alice")
    headers = cookie_headers(server, browser)
    doc_ws = connect(f"{server.ws_url}/ws/docs/{document.pk}", additional_headers=headers, open_timeout=10)
    doc_ws.send(sync_step1(b"\x00"))
    rt_ws = realtime_socket(server, headers)
    both_sockets += [doc_ws, rt_ws]
    assert still_open(doc_ws, 0.3)
    page = browser.get(f"{server.url}/accounts/login/", timeout=10)  # any page with a CSRF token
    csrf = browser.cookies.get("csrftoken") or re.search(r'value="([^"]+)"', page.text)
    browser.post(
        f"{server.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{server.url}/", "X-CSRFToken": str(csrf)},
        timeout=10,
    )
    for ws in (doc_ws, rt_ws):
        code, reason, took = closed_with(ws, within=3)
        assert code == 4002 and reason == "signed out" and took < 1.0, (code, reason, took)


def test_revoking_a_token_at_the_oauth_endpoint_closes_its_sockets_within_a_second(
    server: LiveServer, alice: Any, document: Any, both_sockets: list[ClientConnection]
) -> None:
    secret = secrets.token_urlsafe(32)
    app = get_application_model().objects.create(
        name="kernel probe",
        user=alice,
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=secret,
    )
    issued = requests.post(
        f"{server.url}/o/token/",
        data={
            "grant_type": "client_credentials",
            "scope": "docs:read docs:write realtime:read",
            "client_id": app.client_id,
            "client_secret": secret,
        },
        timeout=10,
    )
    assert issued.ok, issued.text
    token = issued.json()["access_token"]
    doc_ws = bearer_socket(server, f"/ws/docs/{document.pk}", token)
    rt_ws = realtime_socket(server, {"Authorization": f"Bearer {token}"})
    both_sockets += [doc_ws, rt_ws]
    assert still_open(doc_ws, 0.3)
    revoked = requests.post(
        f"{server.url}/o/revoke_token/",
        data={"token": token, "client_id": app.client_id, "client_secret": secret},
        timeout=10,
    )
    assert revoked.status_code == 200
    for ws in (doc_ws, rt_ws):
        code, reason, took = closed_with(ws, within=3)
        assert code == 4002 and reason == "token revoked" and took < 1.0, (code, reason, took)


def test_a_token_that_expires_while_connected_closes_its_sockets(
    server: LiveServer, alice: Any, document: Any, mint_token: Callable[..., str], both_sockets: list[ClientConnection]
) -> None:
    token = mint_token("alice", "docs:read docs:write realtime:read realtime:write", expires=3)
    started = time.monotonic()
    doc_ws = bearer_socket(server, f"/ws/docs/{document.pk}", token)
    rt_ws = realtime_socket(server, {"Authorization": f"Bearer {token}"})
    both_sockets += [doc_ws, rt_ws]
    for ws in (doc_ws, rt_ws):
        code, reason, _took = closed_with(ws, within=6)
        assert code == 4002 and reason == "token expired", (code, reason)
    assert time.monotonic() - started < 3 + 1.5


def test_a_forbid_saved_on_the_same_process_closes_a_viewers_document_socket(
    server: LiveServer,
    live_server_factory: Callable[..., LiveServer],
    alice: Any,
    bob: Any,
    make_user: Callable[..., Any],
    document: Any,
    mint_token: Callable[..., str],
    both_sockets: list[ClientConnection],
) -> None:
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob)
    make_user("chief", superuser=True)
    # A server of its own: a shared server that saved in the admin before keeps content-type
    # ids cached across the test database's flush and restore.
    server = live_server_factory()
    viewer = bearer_socket(server, f"/ws/docs/{document.pk}", mint_token("bob", "docs:read"))
    both_sockets.append(viewer)
    assert still_open(viewer, 0.3)
    admin = signed_in_session(server, "chief")
    add_url = f"{server.url}/admin/policies/accesspolicy/add/"
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', admin.get(add_url, timeout=10).text)
    assert csrf is not None
    forbid = f'forbid(principal == User::"{bob.pk}", action, resource is Document);'
    saved = admin.post(
        add_url,
        # As the impact preview's "Confirm and save" posts it.
        data={
            "csrfmiddlewaretoken": csrf.group(1),
            "name": "no-docs-for-bob",
            "text": forbid,
            "enabled": "on",
            "_impact_confirmed": "1",
        },
        headers={"Referer": add_url},
        timeout=10,
    )
    assert saved.ok and "errornote" not in saved.text, saved.text[:500]
    code, _reason, took = closed_with(viewer, within=5)
    assert code == 4403 and took < 2, (code, took)


def test_close_codes_the_server_asks_for_reach_the_client(
    server: LiveServer, alice: Any, document: Any, mint_token: Callable[..., str], both_sockets: list[ClientConnection]
) -> None:
    token = mint_token("alice", "docs:read docs:write realtime:read realtime:write")
    rt_ws = connect(f"{server.ws_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    doc_ws = bearer_socket(server, f"/ws/docs/{document.pk}", token)
    both_sockets += [rt_ws, doc_ws]
    rt_ws.send("[" * 10 + "1" * (70 * 1024) + "]" * 10)  # beyond REALTIME_MAX_FRAME_BYTES
    assert closed_with(rt_ws, within=5)[0] == 4413
    doc_ws.send(b"\x07garbage")  # not a y-websocket message type
    assert closed_with(doc_ws, within=5)[0] == 4400
