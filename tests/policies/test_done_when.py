"""The issue's "done when", against a live server: a role forbidden a channel pattern from outside an
IP range loses its live subscription within seconds, the simulator agrees, and a per-user publish
limit answers clients with `rate_limited`."""

from __future__ import annotations

import contextlib
import importlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from websockets.sync.client import ClientConnection, connect

from policies.models import AccessPolicy, RateLimitPolicy
from policies.services import access_policy_save, rate_limit_policy_save
from policies.simulator import principal_for, simulate

pytestmark = pytest.mark.django_db(transaction=True)

FORBID = (
    'forbid(principal in Role::"contractors", action, resource is Channel)\n'
    'when { resource.name like "chat.finance*" }\n'
    'unless { context.client_ip.isInRange(ip("10.0.0.0/8")) };'
)


@contextlib.contextmanager
def client(ws_url: str, token: str) -> Iterator[ClientConnection]:
    with connect(f"{ws_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
        yield ws


def call(ws: ClientConnection, kind: str, frame_id: str, payload: Any = None, **header: Any) -> dict[str, Any]:
    ws.send(json.dumps({"header": {"type": kind, "id": frame_id, **header}, "payload": payload}))
    for _ in range(50):
        frame = json.loads(ws.recv(timeout=10))
        if frame["header"].get("id") == frame_id and frame["header"]["type"] in {"ack", "error"}:
            return dict(frame)
    raise AssertionError(f"no answer to {frame_id}")


def next_error(ws: ClientConnection, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        if frame["header"]["type"] == "error":
            return dict(frame)
    raise AssertionError(f"no error frame within {within}s")


def test_forbid_a_pattern_to_a_role_outside_a_range_and_limit_publishing(
    alice: Any, bob: Any, live_server_factory: Callable[..., Any], mint_token: Callable[..., str]
) -> None:
    with contextlib.suppress(ImportError):
        importlib.import_module("webconnect.migrations.0003_default_namespaces").install(apps, None)
    contractors = Group.objects.create(name="contractors")
    alice.groups.add(contractors)
    server = live_server_factory(POLICY_POLL_INTERVAL="1")
    scopes = "realtime:read realtime:write"

    with client(server.ws_url, mint_token("alice", scopes)) as ws:
        assert call(ws, "subscribe", "s1", channel="chat.finance")["header"]["type"] == "ack"
        access_policy_save(policy=AccessPolicy(name="contractors-office-only", text=FORBID), actor=None)
        error = next_error(ws, within=15)
        assert error["payload"]["code"] == "forbidden"
        assert "contractors-office-only" in error["payload"]["message"]
        again = call(ws, "subscribe", "s2", channel="chat.finance")
        assert again["header"]["type"] == "error" and again["payload"]["code"] == "forbidden"

    # The simulator agrees: from inside the range she may, from outside not.
    inside = simulate(
        principal=principal_for(username="alice", client_ip="10.2.3.4"),
        action="subscribe",
        resource_type="Channel",
        resource_id="chat.finance",
    )
    outside = simulate(
        principal=principal_for(username="alice", client_ip="127.0.0.1"),
        action="subscribe",
        resource_type="Channel",
        resource_id="chat.finance",
    )
    assert inside.decision.allowed
    assert not outside.decision.allowed and outside.decision.policies == ("contractors-office-only",)

    rate_limit_policy_save(
        policy=RateLimitPolicy(
            name="publish-2", scope="user", actions="publish", channel_pattern="chat.*", limits="2/minute"
        )
    )
    time.sleep(2.5)  # the server notices the new version within POLICY_POLL_INTERVAL
    with client(server.ws_url, mint_token("bob", scopes)) as ws:
        answers = [call(ws, "publish", f"p{i}", {"n": i}, channel="chat.policies-e2e") for i in range(3)]
        assert [a["header"]["type"] for a in answers] == ["ack", "ack", "error"]
        assert answers[2]["payload"]["code"] == "rate_limited"
        assert 0 < answers[2]["payload"]["retry_after"] <= 60
