"""The handshake remembers access tokens briefly (a reconnect storm looks each up once) and loads
sessions in batches; revocation, sign-out and password changes still take effect at once."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests
from oauth2_provider.models import get_application_model
from websockets.exceptions import InvalidStatus

from tests.conftest import LiveServer, signed_in_session
from tests.kernel.test_lifecycle import closed_with, cookie_headers, realtime_socket, still_open

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def refused(server: LiveServer, headers: dict[str, str]) -> int:
    """The HTTP status of a refused upgrade (fails if the socket opened)."""
    try:
        ws = realtime_socket(server, headers)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    ws.close()
    raise AssertionError("the socket opened")


def test_a_revoked_token_cannot_open_a_socket_even_right_after_it_opened_some(
    live_daphne: LiveServer, alice: Any
) -> None:
    secret = secrets.token_urlsafe(32)
    app = get_application_model().objects.create(
        name="cache probe",
        user=alice,
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=secret,
    )
    issued = requests.post(
        f"{live_daphne.url}/o/token/",
        data={
            "grant_type": "client_credentials",
            "scope": "realtime:read",
            "client_id": app.client_id,
            "client_secret": secret,
        },
        timeout=10,
    )
    assert issued.ok, issued.text
    token = issued.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    first = realtime_socket(live_daphne, headers)
    second = realtime_socket(live_daphne, headers)  # answered from the remembered token
    assert still_open(second, 0.2)
    # Revoked in the server process (as a user would): its control message forgets the token there.
    revoked = requests.post(
        f"{live_daphne.url}/o/revoke_token/",
        data={"token": token, "client_id": app.client_id, "client_secret": secret},
        timeout=10,
    )
    assert revoked.status_code == 200
    for ws in (first, second):
        code, _reason, took = closed_with(ws, within=3)
        assert code == 4002 and took < 1.0
    assert refused(live_daphne, headers) == 403


def test_many_sockets_opened_at_once_with_one_token_are_all_admitted(
    live_daphne: LiveServer, alice: Any, bob: Any, mint_token: Any
) -> None:
    tokens = [mint_token("alice", "realtime:read"), mint_token("bob", "realtime:read")]
    sockets = [realtime_socket(live_daphne, {"Authorization": f"Bearer {tokens[n % 2]}"}) for n in range(6)]
    assert all(still_open(ws, 0.05) for ws in sockets)
    for ws in sockets:
        ws.close()


def test_a_session_whose_password_changed_or_that_signed_out_opens_no_signed_in_socket(
    live_daphne: LiveServer, alice: Any
) -> None:
    browser = signed_in_session(live_daphne, "alice")
    headers = cookie_headers(live_daphne, browser)
    ws = realtime_socket(live_daphne, headers)
    assert still_open(ws, 0.2)
    ws.close()
    alice.set_password("a new one entirely")
    alice.save()
    # The session's auth hash no longer matches: the handshake sees an anonymous caller,
    # who may not connect (no namespace allows anonymous reading by default).
    assert refused(live_daphne, headers) == 403


def test_a_cookie_from_another_origin_is_refused(live_daphne: LiveServer, alice: Any) -> None:
    browser = signed_in_session(live_daphne, "alice")
    headers = dict(cookie_headers(live_daphne, browser), Origin="https://evil.example")
    assert refused(live_daphne, headers) == 403
