"""REST: tickets, publish, history, presence, the OpenAPI schema, and /metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


def api(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_publish_then_history(alice: Any, mint_token: Callable[..., str]) -> None:
    client = api(mint_token("alice", "realtime:read realtime:write"))
    response = client.post("/api/channels/chat.rest/publish/", {"text": "hello"}, content_type="application/json")
    assert response.status_code == 201 and response.json()["offset"] == 1
    history = client.get("/api/channels/chat.rest/history/?limit=10").json()
    assert history["offset"] == 1 and history["messages"][0]["payload"] == {"text": "hello"}
    assert history["messages"][0]["header"]["from"]["name"] == "alice"


def test_publish_needs_realtime_write(alice: Any, mint_token: Callable[..., str]) -> None:
    client = api(mint_token("alice", "realtime:read"))
    response = client.post("/api/channels/chat.rest/publish/", {"a": 1}, content_type="application/json")
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_publish_is_authorized_per_channel(alice: Any, bob: Any, mint_token: Callable[..., str]) -> None:
    client = api(mint_token("alice", "realtime:read realtime:write"))
    assert client.get(f"/api/channels/user.{bob.pk}/history/").status_code == 403
    assert client.get("/api/channels/nope.x/history/").status_code == 404
    bad = client.post("/api/channels/bad name/publish/", {}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request"


def test_publish_bad_bodies(alice: Any, mint_token: Callable[..., str], settings: Any) -> None:
    client = api(mint_token("alice", "realtime:read realtime:write"))
    url = "/api/channels/chat.rest/publish/"
    assert client.post(url, "{", content_type="application/json").json()["code"] == "bad_request"
    assert client.post(url, "[" * 3000 + "]" * 3000, content_type="application/json").status_code == 400
    settings.REALTIME_MAX_FRAME_BYTES = 300
    assert client.post(url, '"' + "x" * 400 + '"', content_type="application/json").status_code == 413


def test_rate_limited_publish_is_429_with_retry_after(alice: Any, mint_token: Callable[..., str]) -> None:
    from webconnect import authorization

    async def refuse(principal: Any, action: str, resource: Any) -> authorization.RateDecision:
        return authorization.RateDecision(False, retry_after=2.0, limit="1/minute")

    previous = authorization._rate_check
    authorization.set_rate_checker(refuse)
    try:
        client = api(mint_token("alice", "realtime:write"))
        response = client.post("/api/channels/chat.rest/publish/", {}, content_type="application/json")
    finally:
        authorization.set_rate_checker(previous)
    assert response.status_code == 429 and response["Retry-After"] == "2"
    assert response.json()["retry_after"] == 2.0


def test_presence_endpoint(alice: Any, mint_token: Callable[..., str]) -> None:
    client = api(mint_token("alice", "realtime:read"))
    assert client.get("/api/channels/chat.rest/presence/").json() == {"clients": []}


def test_ticket_endpoint_for_session_and_token(alice: Any, mint_token: Callable[..., str]) -> None:
    browser = Client(enforce_csrf_checks=False)
    browser.force_login(alice)
    response = browser.post("/api/realtime/tickets/")
    assert response.status_code == 201 and len(response.json()["ticket"]) > 20
    assert response.json()["expires_in"] == 30
    assert api(mint_token("alice", "realtime:read")).post("/api/realtime/tickets/").status_code == 201
    assert api(mint_token("alice", "docs:read")).post("/api/realtime/tickets/").status_code == 403
    assert Client().post("/api/realtime/tickets/").status_code in {401, 403}


def test_the_endpoints_are_in_the_openapi_schema(settings: Any) -> None:
    settings.API_DOCS_PUBLIC = True
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for path in ("/api/channels/{channel}/publish/", "/api/channels/{channel}/history/", "/api/realtime/tickets/"):
        assert path in schema


def test_metrics_for_staff_only_by_default(alice: Any, admin_user: Any, mint_token: Callable[..., str]) -> None:
    assert Client().get("/metrics").status_code == 403
    client = Client()
    client.force_login(alice)
    assert client.get("/metrics").status_code == 403
    client.force_login(admin_user)
    response = client.get("/metrics")
    assert response.status_code == 200 and b"webconnect_realtime_connections" in response.content
    assert api(mint_token("root", "realtime:read")).get("/metrics").status_code == 200


def test_metrics_for_allow_listed_addresses(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["127.0.0.0/8"]
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.1.1.1").get("/metrics").status_code == 403
