"""Policy changes reach every process: version bump, notification, reload, live sessions re-checked."""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.apps import apps
from websockets.sync.client import ClientConnection, connect

from policies import engine, watch
from policies.models import AccessPolicy, PolicyState
from policies.services import access_policy_save
from tests.conftest import signed_in_session
from webconnect.authorization import authorize
from webconnect.identity import Principal, Resource

FORBID_CHAT = 'forbid(principal, action, resource is Channel)\nwhen { resource.namespace == "chat" };'
# Forbidding chat breaks the shipped policy test "signed-in-users-read-chat", which would refuse the save.
pytestmark = pytest.mark.usefixtures("no_policy_tests")


@pytest.fixture
def policy_changes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The policy versions announced to every process (control messages on the bus)."""
    versions: list[int] = []

    def record(message: dict[str, Any]) -> None:
        assert message["op"] == "policy"
        versions.append(message["version"])

    monkeypatch.setattr(watch, "send_control", record)
    yield versions


@pytest.mark.django_db
def test_a_save_moves_the_version_and_notifies_this_process_after_commit(
    alice: Any, policy_changes: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    lobby = Resource("Channel", "chat.lobby")
    assert authorize(Principal(alice), "publish", lobby)
    version = PolicyState.objects.get().version
    with django_capture_on_commit_callbacks(execute=True):
        access_policy_save(policy=AccessPolicy(name="no-chat", text=FORBID_CHAT), actor=None)
        assert policy_changes == []  # nothing is announced before the commit
    assert PolicyState.objects.get().version == version + 1
    assert policy_changes == [version + 1]
    assert not authorize(Principal(alice), "publish", lobby)
    assert engine.loaded_version() == version + 1


@pytest.mark.django_db
def test_the_periodic_check_notices_a_change_made_by_another_process(alice: Any, policy_changes: list[int]) -> None:
    assert authorize(Principal(alice), "publish", Resource("Channel", "chat.lobby"))
    watch.check_once()  # settles what this process already knows
    # Another process saved: the rows and the version moved, no message reached us.
    AccessPolicy.objects.create(name="no-chat", text=FORBID_CHAT)
    PolicyState.objects.filter(pk=1).update(version=PolicyState.objects.get().version + 1)
    assert watch.check_once() is True
    assert watch.check_once() is False  # once per version
    assert not authorize(Principal(alice), "publish", Resource("Channel", "chat.lobby"))


@pytest.mark.django_db
def test_a_broken_row_keeps_the_last_good_policy_set(alice: Any) -> None:
    assert authorize(Principal(alice), "publish", Resource("Channel", "chat.lobby"))
    # Written behind the admin's back (no validation): the process keeps deciding with the last good set.
    AccessPolicy.objects.create(name="broken", text="permit(principal, action resource);")
    PolicyState.objects.filter(pk=1).update(version=PolicyState.objects.get().version + 1)
    engine.mark_stale()
    assert authorize(Principal(alice), "publish", Resource("Channel", "chat.lobby"))


# --- Across processes: a live server's open subscription ends after a change ---------------


def _install_namespaces() -> None:
    # Transactional tests flush every table; the real-time namespaces come from a data migration.
    with contextlib.suppress(ImportError):
        importlib.import_module("webconnect.migrations.0003_default_namespaces").install(apps, None)


@contextlib.contextmanager
def _subscribed(ws_url: str, token: str, channel: str) -> Iterator[ClientConnection]:
    with connect(f"{ws_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
        ws.send(json.dumps({"header": {"type": "subscribe", "id": "s1", "channel": channel}, "payload": None}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=10))
            if frame["header"].get("id") == "s1":
                assert frame["header"]["type"] == "ack", frame
                yield ws
                return
        raise AssertionError("no answer to subscribe")


def _wait_for_error(ws: ClientConnection, within: float) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            frame = json.loads(ws.recv(timeout=max(0.1, within - (time.monotonic() - start))))
        except TimeoutError:
            break
        if frame["header"]["type"] == "error":
            return frame, time.monotonic() - start
    raise AssertionError(f"the subscription was not ended within {within}s")


@pytest.mark.django_db(transaction=True)
def test_the_periodic_check_ends_a_live_subscription_on_another_server(
    alice: Any, live_server_factory: Callable[..., Any], mint_token: Callable[..., str]
) -> None:
    """Embedded tier: no Redis, so the server notices by reading the version (POLICY_POLL_INTERVAL)."""
    _install_namespaces()
    server = live_server_factory(POLICY_POLL_INTERVAL="1")
    with _subscribed(server.ws_url, mint_token("alice", "realtime:read realtime:write"), "chat.lobby") as ws:
        access_policy_save(policy=AccessPolicy(name="no-chat", text=FORBID_CHAT), actor=None)
        frame, _took = _wait_for_error(ws, within=15)
        assert frame["payload"]["code"] == "forbidden"
        assert "no-chat" in frame["payload"]["message"]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_policy_saved_on_one_server_ends_a_subscription_on_another_through_redis(
    alice: Any, make_user: Callable[..., Any], live_server_factory: Callable[..., Any], mint_token: Callable[..., str]
) -> None:
    _install_namespaces()
    make_user("chief", superuser=True)
    editor = live_server_factory()
    # A long poll interval on the watching server: only the Redis notification can be this fast.
    watcher = live_server_factory(POLICY_POLL_INTERVAL="120")
    token = mint_token("alice", "realtime:read realtime:write")
    with _subscribed(watcher.ws_url, token, "chat.lobby") as ws:
        admin = signed_in_session(editor, "chief", "/admin/login/")
        add = admin.get(f"{editor.url}/admin/policies/accesspolicy/add/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', add.text)
        assert csrf is not None
        saved = admin.post(
            f"{editor.url}/admin/policies/accesspolicy/add/",
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "name": "no-chat",
                "text": FORBID_CHAT,
                "enabled": "on",
                "_impact_confirmed": "1",
            },
            headers={"Referer": f"{editor.url}/admin/policies/accesspolicy/add/"},
            timeout=10,
        )
        assert saved.ok and AccessPolicy.objects.filter(name="no-chat").exists()
        frame, took = _wait_for_error(ws, within=10)
        assert frame["payload"]["code"] == "forbidden" and "no-chat" in frame["payload"]["message"]
        assert took < 10
