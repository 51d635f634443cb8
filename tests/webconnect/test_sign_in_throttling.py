"""Sign-in throttling on both login forms: nobody can lock someone else out (issue 12, finding 1).

Refusals are keyed by (account, address) and by address; an account attacked from
everywhere is slowed with a growing delay, and its owner still signs in.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from tests.conftest import PASSWORD
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db

FORMS = ["/accounts/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def _short_slowdown(settings: Any) -> None:
    # The real defaults (1 s doubling to 16 s) would make these tests minutes long.
    settings.LOGIN_SLOWDOWN_BASE_MS = 1
    settings.LOGIN_SLOWDOWN_MAX_MS = 4


def attempt(client: Client, form: str, username: str, password: str, ip: str) -> Any:
    return client.post(form, {"username": username, "password": password}, REMOTE_ADDR=ip)


def named(name: str, form: str) -> str:
    """One account per form: with Redis, counters outlive a test (keys are per test run)."""
    return f"{name}{FORMS.index(form)}"


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "/login/" not in response.url


@pytest.mark.parametrize("form", FORMS)
def test_forty_wrong_passwords_from_elsewhere_do_not_lock_the_owner_out(
    client: Client, make_user: Any, form: str
) -> None:
    make_user(named("victim", form), superuser=True)
    for n in range(40):
        attempt(client, form, named("victim", form), f"guess-{n}", ip=f"203.0.113.{n}")
    response = attempt(Client(), form, named("victim", form), PASSWORD, ip="198.51.100.20")
    assert signed_in(response), response.status_code


@pytest.mark.parametrize("form", FORMS)
def test_one_address_is_refused_for_an_account_after_five_failures_even_with_the_right_password(
    client: Client, make_user: Any, form: str
) -> None:
    make_user(named("target", form), superuser=True)
    answers = [attempt(client, form, named("target", form), "wrong", ip="192.0.2.9").status_code for _ in range(5)]
    assert answers == [200] * 5
    refused = attempt(client, form, named("target", form), PASSWORD, ip="192.0.2.9")
    assert refused.status_code == 429
    assert b"Too many failed sign-in attempts. Try again in about 15 minutes." in refused.content
    assert "_auth_user_id" not in client.session
    denied = AuditEvent.objects.get(action="auth.login", outcome="denied")
    assert denied.actor_name == named("target", form) and denied.client_ip == "192.0.2.9"
    assert denied.details["reason"] == "throttled"
    assert AuditEvent.objects.filter(action="auth.login", outcome="failure").count() == 5
    # The same account from another address, and another account from this one, are not refused.
    assert signed_in(attempt(Client(), form, named("target", form), PASSWORD, ip="192.0.2.10"))
    make_user(named("neighbour", form), superuser=True)
    assert signed_in(attempt(Client(), form, named("neighbour", form), PASSWORD, ip="192.0.2.9"))


def test_the_admin_form_was_throttled_after_forty_wrong_passwords_from_one_address(
    client: Client, admin_user: Any
) -> None:
    answers = [attempt(client, "/admin/login/", "root", f"guess-{n}", ip="192.0.2.77").status_code for n in range(40)]
    assert answers[:5] == [200] * 5 and set(answers[5:]) == {429}
    assert attempt(client, "/admin/login/", "root", PASSWORD, ip="192.0.2.77").status_code == 429
    assert client.get("/admin/").status_code == 302  # not signed in


def test_one_address_is_refused_for_every_account_after_its_own_ceiling(
    client: Client, settings: Any, alice: Any
) -> None:
    settings.LOGIN_FAILURES_PER_IP = "3/15minutes"
    for name in ("u1", "u2", "u3"):
        attempt(client, "/admin/login/", name, "wrong", ip="192.0.2.50")
    assert attempt(client, "/accounts/login/", "alice", PASSWORD, ip="192.0.2.50").status_code == 429
    assert signed_in(attempt(Client(), "/accounts/login/", "alice", PASSWORD, ip="192.0.2.51"))


def test_an_ipv6_client_counts_as_its_slash_64(client: Client, alice: Any) -> None:
    for n in range(5):
        attempt(client, "/accounts/login/", "alice", "wrong", ip=f"2001:db8:1:2::{n + 1:x}")
    assert attempt(client, "/accounts/login/", "alice", PASSWORD, ip="2001:db8:1:2:ffff::9").status_code == 429
    assert signed_in(attempt(Client(), "/accounts/login/", "alice", PASSWORD, ip="2001:db8:1:3::1"))


@pytest.mark.parametrize("form", FORMS)
def test_an_account_failing_from_everywhere_is_slowed_with_a_growing_delay_not_locked(
    client: Client, settings: Any, make_user: Any, form: str
) -> None:
    settings.LOGIN_FAILURES_PER_ACCOUNT = "3/15minutes"
    settings.LOGIN_SLOWDOWN_BASE_MS = 150
    settings.LOGIN_SLOWDOWN_MAX_MS = 600
    make_user(named("popular", form), superuser=True)
    waits = []
    for n in range(7):
        started = time.monotonic()
        response = attempt(client, form, named("popular", form), "wrong", ip=f"203.0.113.{n}")
        waits.append(time.monotonic() - started)
        assert response.status_code == 200  # refused as a wrong password, never locked
    assert max(waits[:3]) < 0.15  # under the ceiling: no delay
    assert 0.15 <= waits[3] < 0.3 + 0.15
    assert 0.3 <= waits[4] < 0.6 + 0.15
    assert 0.6 <= waits[5] < 0.6 + 0.3 and 0.6 <= waits[6] < 0.6 + 0.3  # capped at LOGIN_SLOWDOWN_MAX_MS
    started = time.monotonic()
    response = attempt(Client(), form, named("popular", form), PASSWORD, ip="198.51.100.30")
    assert signed_in(response)  # the owner signs in, late
    assert time.monotonic() - started >= 0.6
    # A stranger's sign-in is not slowed by another account's trouble.
    make_user(named("quiet", form), superuser=True)
    started = time.monotonic()
    assert signed_in(attempt(Client(), form, named("quiet", form), PASSWORD, ip="203.0.113.1"))
    assert time.monotonic() - started < 0.15


def test_signing_in_clears_only_this_addresses_failures(client: Client, alice: Any) -> None:
    for _ in range(4):
        attempt(client, "/accounts/login/", "alice", "wrong", ip="192.0.2.60")
    assert signed_in(attempt(Client(), "/accounts/login/", "alice", PASSWORD, ip="192.0.2.60"))
    answers = [attempt(client, "/accounts/login/", "alice", "wrong", ip="192.0.2.60").status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]


def test_a_non_staff_user_cannot_use_the_admin_form(client: Client, alice: Any) -> None:
    response = attempt(client, "/admin/login/", "alice", PASSWORD, ip="192.0.2.70")
    assert response.status_code == 200
    assert b"staff account" in response.content
