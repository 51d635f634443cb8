"""Rate-limit policies: validation, enforcement through acheck_rate, audit, Redis outage, shared budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from policies import limitspec, metrics, ratelimit
from policies.models import RateLimitPolicy
from policies.services import rate_limit_policy_save
from tests.conftest import ROOT
from webconnect.authorization import acheck_rate
from webconnect.identity import ConnectionAuth, Principal, Resource


def make_policy(**fields: Any) -> RateLimitPolicy:
    defaults: dict[str, Any] = {"name": "publish-limit", "scope": "user", "actions": "publish", "limits": "3/minute"}
    return rate_limit_policy_save(policy=RateLimitPolicy(**{**defaults, **fields}))


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("ten per second", "'ten per second' is not a limit"),
        ("0/second", "at least 1"),
        ("", "This field cannot be blank"),
        ("20/second;5/fortnight", "'5/fortnight' is not a limit"),
    ],
)
@pytest.mark.django_db
def test_bad_limits_are_refused_with_a_clear_message(limits: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_policy(limits=limits)
    assert message in "; ".join(caught.value.messages)
    assert not RateLimitPolicy.objects.filter(name="publish-limit").exists()  # the defaults aside


@pytest.mark.django_db
def test_good_limits_and_unknown_actions() -> None:
    assert [str(item) for item in limitspec.parse_limits("20/second;600/minute")] == [
        "20 per 1 second",
        "600 per 1 minute",
    ]
    with pytest.raises(ValidationError, match="unknown action"):
        make_policy(actions="publish,teleport")


@pytest.mark.django_db
def test_the_admin_form_shows_limit_errors(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/policies/ratelimitpolicy/add/",
        {"name": "x", "scope": "user", "limits": "ten per second", "strategy": "sliding", "enabled": "on"},
    )
    assert response.status_code == 200 and "is not a limit" in response.content.decode()
    response = client.post(
        "/admin/policies/ratelimitpolicy/add/",
        {"name": "x", "scope": "user", "limits": "20/second;600/minute", "strategy": "sliding", "enabled": "on"},
    )
    assert response.status_code == 302 and RateLimitPolicy.objects.filter(name="x").exists()


@pytest.mark.django_db(transaction=True)
async def test_a_per_user_publish_limit(alice: Any, bob: Any) -> None:
    await sync_to_async(make_policy)(channel_pattern="chat.*")
    lobby = Resource("Channel", "chat.lobby")
    results = [await acheck_rate(Principal(alice), "publish", lobby) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert 0 < results[-1].retry_after <= 60 and results[-1].limit == "3 per 1 minute"
    # Other users, other actions and channels outside the pattern are untouched.
    assert (await acheck_rate(Principal(bob), "publish", lobby)).allowed
    assert (await acheck_rate(Principal(alice), "subscribe", lobby)).allowed
    assert (await acheck_rate(Principal(alice), "publish", Resource("Channel", "ops.x"))).allowed


@pytest.mark.django_db(transaction=True)
async def test_scopes_ip_channel_and_role_selectors(alice: Any, bob: Any) -> None:
    staff = await sync_to_async(Group.objects.create)(name="bots")
    await sync_to_async(alice.groups.add)(staff)
    await sync_to_async(make_policy)(name="bots", limits="1/minute", role=staff)
    await sync_to_async(make_policy)(name="per-ip", scope="ip", actions="subscribe", limits="2/minute")
    await sync_to_async(make_policy)(name="per-channel", scope="channel", actions="history", limits="1/minute")
    lobby = Resource("Channel", "chat.lobby")
    assert (await acheck_rate(Principal(alice), "publish", lobby)).allowed
    assert not (await acheck_rate(Principal(alice), "publish", lobby)).allowed
    assert (await acheck_rate(Principal(bob), "publish", lobby)).allowed  # not a bot
    assert (await acheck_rate(Principal(bob), "publish", lobby)).allowed

    def at(user: Any, ip: str) -> Principal:
        return Principal(user, ConnectionAuth(method="session", client_ip=ip))

    assert (await acheck_rate(at(alice, "10.0.0.1"), "subscribe", lobby)).allowed
    assert (await acheck_rate(at(bob, "10.0.0.1"), "subscribe", lobby)).allowed
    assert not (await acheck_rate(at(bob, "10.0.0.1"), "subscribe", lobby)).allowed
    assert (await acheck_rate(at(bob, "10.0.0.2"), "subscribe", lobby)).allowed
    assert (await acheck_rate(Principal(alice), "history", lobby)).allowed
    assert not (await acheck_rate(Principal(bob), "history", lobby)).allowed  # one budget per channel


@pytest.mark.django_db(transaction=True)
async def test_rate_limit_hits_are_audited_in_aggregate(alice: Any) -> None:
    from webconnect.models import AuditEvent

    await sync_to_async(make_policy)(limits="1/minute")
    lobby = Resource("Channel", "chat.lobby")
    for _ in range(6):
        await acheck_rate(Principal(alice), "publish", lobby)
    events = await sync_to_async(list)(AuditEvent.objects.filter(action="ratelimit.exceeded"))
    assert len(events) == 1 and events[0].details["policy"] == "publish-limit"


@pytest.mark.django_db(transaction=True)
async def test_when_the_shared_storage_is_unreachable_each_process_enforces_the_limit(alice: Any) -> None:
    await sync_to_async(make_policy)(limits="2/minute")
    before = metrics.rate_limit_storage_errors._value.get()
    # Nothing listens on port 1: every Redis call fails at once.
    with override_settings(RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:1/0"):
        ratelimit.reset()
        lobby = Resource("Channel", "chat.lobby")
        results = [(await acheck_rate(Principal(alice), "publish", lobby)).allowed for _ in range(3)]
    ratelimit.reset()
    assert results == [True, True, False]
    assert metrics.rate_limit_storage_errors._value.get() >= before + 2


def _hits_in_another_process(user_id: int, count: int, database_name: str) -> list[bool]:
    script = f"""
import asyncio, json, django
django.setup()
from django.contrib.auth import get_user_model
from webconnect.authorization import acheck_rate
from webconnect.identity import Principal, Resource
user = get_user_model().objects.get(pk={user_id})
async def main():
    return [(await acheck_rate(Principal(user), "publish", Resource("Channel", "chat.lobby"))).allowed
            for _ in range({count})]
print(json.dumps(asyncio.run(main())))
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "WEBCONNECT_TEST_DATABASE_NAME": database_name}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_budget_on_redis(alice: Any) -> None:
    from django.db import connection

    make_policy(limits="5/minute")
    first = _hits_in_another_process(alice.pk, 3, connection.settings_dict["NAME"])
    second = _hits_in_another_process(alice.pk, 4, connection.settings_dict["NAME"])
    assert first == [True, True, True]
    assert second == [True, True, False, False]  # 5 in all, across both processes
