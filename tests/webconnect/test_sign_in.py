"""Browser sign-in through Django's auth views: throttled, audited, CSRF-protected."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.conftest import PASSWORD
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db


def sign_in(client: Client, username: str, password: str, ip: str = "198.51.100.7") -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_the_sign_in_page_renders_without_external_assets(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'name="password"' in html
    assert "https://" not in html  # every asset is served by the project


def test_signing_in_reaches_the_home_page_and_is_audited(client: Client, alice: Any) -> None:
    response = sign_in(client, "alice", PASSWORD)
    assert response.status_code == 302 and response.url == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert b"Welcome, alice" in home.content
    assert b"Administration" not in home.content  # not staff
    event = AuditEvent.objects.filter(action="auth.login").first()
    assert event is not None and event.outcome == "success" and event.actor_name == "alice"
    assert event.client_ip == "198.51.100.7"


def test_the_home_page_sends_strangers_to_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_a_wrong_password_is_refused_with_a_message_and_audited_without_the_password(
    client: Client, alice: Any
) -> None:
    response = sign_in(client, "alice", "wrong-password")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    event = AuditEvent.objects.get(action="auth.login", outcome="failure")
    assert event.actor_name == "alice"
    assert "wrong-password" not in str(event.details) + event.target


def test_an_unknown_user_gets_the_same_message(client: Client) -> None:
    response = sign_in(client, "nobody", "whatever")
    assert b"Please enter a correct username and password" in response.content


def test_repeated_failures_throttle_the_address_across_accounts(client: Client, settings: Any, alice: Any) -> None:
    settings.LOGIN_FAILURES_PER_IP = "3/15minutes"
    for name in ("u1", "u2", "u3"):
        sign_in(client, name, "wrong", ip="192.0.2.50")
    response = sign_in(client, "alice", PASSWORD, ip="192.0.2.50")
    assert response.status_code == 429
    assert sign_in(client, "alice", PASSWORD, ip="192.0.2.51").status_code == 302


def test_sign_in_without_a_csrf_token_is_refused(alice: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403


def test_signing_out_is_a_post_and_is_audited(client: Client, alice: Any) -> None:
    client.force_login(alice)
    page = client.get("/accounts/logout/")  # a page with the sign-out button; it signs nobody out
    assert page.status_code == 200 and b'method="post" action="/accounts/logout/"' in page.content
    assert client.get("/").status_code == 200
    assert not AuditEvent.objects.filter(action="auth.logout").exists()
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302
    assert AuditEvent.objects.filter(action="auth.logout", actor_name="alice").exists()


def test_changing_the_password_is_audited(client: Client, alice: Any) -> None:
    client.force_login(alice)
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-new Long passphrase 42",
            "new_password2": "a-new Long passphrase 42",
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.password_change")
    assert event.actor_name == "alice"
    assert "passphrase" not in str(event.details)


def test_password_reset_sends_a_link_that_sets_a_new_password(client: Client, alice: Any, mailoutbox: Any) -> None:
    client.post("/accounts/password_reset/", {"email": "alice@example.com"})
    assert len(mailoutbox) == 1
    link = next(line for line in mailoutbox[0].body.splitlines() if "/accounts/reset/" in line).strip()
    path = link[link.index("/accounts/reset/") :]
    form_page = client.get(path, follow=True)
    assert b"Choose a new password" in form_page.content
    response = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "reset Passphrase 99!", "new_password2": "reset Passphrase 99!"},
    )
    assert response.status_code == 302
    assert client.login(username="alice", password="reset Passphrase 99!")
    assert AuditEvent.objects.filter(action="auth.password_reset", actor_name="alice").exists()


def test_staff_see_the_admin_link_and_reach_the_admin(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    assert b"Administration" in client.get("/").content
    assert client.get("/admin/").status_code == 200
