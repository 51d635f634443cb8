"""The SSE fallback (`GET /api/channels/{channel}/events/`) through a live server: live and
recovered messages (Last-Event-ID or ?since=), `recovered: false` when history cannot fill the
gap, heartbeats, and the same authorization as a subscribe."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


class EventSource:
    """A minimal SSE reader over http.client (which undoes the chunked encoding)."""

    def __init__(self, port: int, path: str, headers: dict[str, str], timeout: float = 10) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **headers})
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def json(self) -> Any:
        return json.loads(self.response.read())

    def items(self) -> Iterator[dict[str, str]]:
        """Events as {"event", "id", "data"}, and comments as {"comment": text}."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                return
            line = line.rstrip("\n")
            if line.startswith(":"):
                yield {"comment": line[1:].strip()}
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                yield fields
                fields = {}

    def events(self, count: int, kind: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for item in self.items():
            if "event" in item and (kind is None or item["event"] == kind):
                found.append({**item, "data": json.loads(item["data"])})
                if len(found) == count:
                    break
        return found

    def close(self) -> None:
        self.conn.close()


def publish(port: int, token: str, channel: str, payload: Any) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        f"/api/channels/{channel}/publish/",
        body=json.dumps(payload),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 201, body
    return dict(body)


@pytest.fixture
def token(alice: Any, mint_token: Callable[..., str]) -> str:
    return mint_token("alice", "realtime:read realtime:write")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_sse_client_receives_recovered_then_live_messages_without_a_gap(live_daphne: Any, token: str) -> None:
    port = live_daphne.port
    epoch = publish(port, token, "chat.sse", {"n": 1})["epoch"]
    publish(port, token, "chat.sse", {"n": 2})
    stream = EventSource(port, f"/api/channels/chat.sse/events/?since={epoch}:0", bearer(token))
    assert stream.status == 200
    assert stream.response.getheader("Content-Type", "").startswith("text/event-stream")
    subscribed = stream.events(1)[0]
    assert subscribed["event"] == "subscribed"
    assert subscribed["data"]["payload"] == {"offset": 2, "epoch": epoch, "recovered": True}
    # Published while the stream is open: it arrives after the recovered ones, in order.
    threading.Timer(0.3, publish, (port, token, "chat.sse", {"n": 3})).start()
    messages = stream.events(3, "message")
    assert [m["data"]["payload"]["n"] for m in messages] == [1, 2, 3]
    assert [m["id"] for m in messages] == [f"{epoch}:1", f"{epoch}:2", f"{epoch}:3"]
    assert messages[0]["data"]["header"]["from"]["name"] == "alice"
    stream.close()

    # The browser's reconnect: Last-Event-ID says where it stopped; only what followed is sent.
    publish(port, token, "chat.sse", {"n": 4})
    again = EventSource(port, "/api/channels/chat.sse/events/", {**bearer(token), "Last-Event-ID": messages[1]["id"]})
    assert again.events(1)[0]["data"]["payload"]["recovered"] is True
    assert [m["data"]["payload"]["n"] for m in again.events(2, "message")] == [3, 4]
    again.close()


def test_a_stale_position_is_told_recovered_false_and_gets_the_current_one(live_daphne: Any, token: str) -> None:
    port = live_daphne.port
    position = publish(port, token, "chat.sse2", {"n": 1})
    stream = EventSource(port, "/api/channels/chat.sse2/events/", {**bearer(token), "Last-Event-ID": "gone-epoch:7"})
    payload = stream.events(1)[0]["data"]["payload"]
    assert payload == {"offset": position["offset"], "epoch": position["epoch"], "recovered": False}
    stream.close()


def test_the_stream_is_refused_where_a_subscribe_would_be(live_daphne: Any, token: str, bob: Any) -> None:
    port = live_daphne.port
    # user.<id> channels: only that user subscribes.
    refused = EventSource(port, f"/api/channels/user.{bob.pk}/events/", bearer(token))
    assert refused.status == 403 and refused.json()["code"] == "forbidden"
    unknown = EventSource(port, "/api/channels/nope.x/events/", bearer(token))
    assert unknown.status == 404 and unknown.json()["code"] == "not_found"
    anonymous = EventSource(port, "/api/channels/chat.sse/events/", {})
    assert anonymous.status in {401, 403}
    bad = EventSource(port, "/api/channels/chat.sse/events/", {**bearer(token), "Last-Event-ID": "no-offset"})
    assert bad.status == 400 and bad.json()["code"] == "bad_request"


def test_an_idle_stream_gets_heartbeat_comments(live_server_factory: Callable[..., Any], token: str) -> None:
    server = live_server_factory(REALTIME_SSE_HEARTBEAT_SECONDS="1")
    stream = EventSource(server.port, "/api/channels/chat.quiet/events/", bearer(token))
    started = time.monotonic()
    comments = []
    for item in stream.items():
        if "comment" in item:
            comments.append(item["comment"])
            if len(comments) == 2:
                break
    assert comments == ["ping", "ping"] and time.monotonic() - started < 8
    stream.close()


def ended_with(stream: EventSource) -> dict[str, Any]:
    """The `error` event that ends the stream (skipping what came before it), and that it is the end."""
    (final,) = stream.events(1, "error")
    assert list(stream.items()) == []  # nothing follows: the response is over
    return dict(final["data"])


def test_signing_out_ends_the_browsers_streams_at_once(live_daphne: Any, alice: Any) -> None:
    import re

    from tests.conftest import signed_in_session

    session = signed_in_session(live_daphne, "alice")
    cookie = f"sessionid={session.cookies['sessionid']}"
    stream = EventSource(live_daphne.port, "/api/channels/chat.sse-out/events/", {"Cookie": cookie}, timeout=20)
    assert stream.status == 200 and stream.events(1)[0]["event"] == "subscribed"
    started = time.monotonic()
    page = session.get(f"{live_daphne.url}/accounts/logout/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf is not None
    session.post(
        f"{live_daphne.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": csrf.group(1)},
        headers={"Referer": f"{live_daphne.url}/accounts/logout/"},
        timeout=10,
    )
    # The kernel ends the stream like a socket (close code 4002), long before the next heartbeat.
    assert ended_with(stream) == {"code": "revoked", "message": "signed out", "close_code": 4002}
    assert time.monotonic() - started < 10
    stream.close()


def test_a_stream_ends_when_its_token_expires(live_daphne: Any, alice: Any, mint_token: Callable[..., str]) -> None:
    token = mint_token("alice", "realtime:read", expires=3)
    stream = EventSource(live_daphne.port, "/api/channels/chat.sse-expiry/events/", bearer(token), timeout=20)
    assert stream.status == 200
    final = ended_with(stream)
    assert final["code"] == "revoked" and final["close_code"] == 4002 and final["message"] == "token expired"
    stream.close()
