"""LDAP sign-in against a real slapd, through the ordinary sign-in form of a real server process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from federation.models import ExternalIdentity
from policies.models import AccessPolicy
from tests.conftest import LiveServer, free_port
from tests.federation.conftest import form_errors, form_sign_in, ws_subscribe
from tests.federation.directory import ADMIN_DN, ADMIN_PASSWORD, GROUPS, PEOPLE, USERS, Directory
from webconnect.models import AuditEvent, Namespace

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

GENERIC = "Please enter a correct username and password"


@pytest.fixture(scope="module")
def ldap_server(directory: Directory, live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    server = live_server_factory(**directory.settings_env())
    yield server
    server.stop()


def password(uid: str) -> str:
    return USERS[uid][1]


def last_event(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).order_by("-id").first()
    assert event is not None, f"no {action} event"
    return event


def test_a_directory_user_signs_in_through_the_form_with_name_email_and_groups(ldap_server: LiveServer) -> None:
    session, response = form_sign_in(ldap_server, "ada", password("ada"))
    assert response.url == f"{ldap_server.url}/", form_errors(response)
    assert "Welcome, Ada Lovelace" in session.get(f"{ldap_server.url}/", timeout=10).text

    user = get_user_model().objects.get(username="ada")
    assert (user.get_full_name(), user.email) == ("Ada Lovelace", "ada@example.org")
    assert not user.has_usable_password()  # the directory holds the password
    assert set(user.groups.values_list("name", flat=True)) == {"engineering", "webconnect-users"}
    assert ExternalIdentity.objects.filter(user=user, provider="ldap", subject="ada").exists()
    event = last_event("auth.external_login")
    assert event.actor_id == user.pk and event.outcome == "success"
    assert event.details["provider"] == "ldap" and event.details["subject"] == f"uid=ada,{PEOPLE}"
    assert event.details["groups_granted"] == ["engineering", "webconnect-users"]
    assert event.details["groups_removed"] == []


def test_groups_removed_in_the_directory_are_removed_at_the_next_sign_in(
    ldap_server: LiveServer, directory: Directory
) -> None:
    form_sign_in(ldap_server, "ada", password("ada"))
    change = f"dn: cn=engineering,{GROUPS}\nchangetype: modify\n%s: member\nmember: uid=ada,{PEOPLE}\n"

    def modify(op: str) -> None:
        done = subprocess.run(
            ["ldapmodify", "-x", "-H", directory.uri, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=(change % op).encode(),
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr.decode()

    modify("delete")
    try:
        _, response = form_sign_in(ldap_server, "ada", password("ada"))
        assert response.url == f"{ldap_server.url}/"
    finally:
        modify("add")
    user = get_user_model().objects.get(username="ada")
    assert set(user.groups.values_list("name", flat=True)) == {"webconnect-users"}
    event = last_event("auth.external_login")
    assert event.details["groups_granted"] == [] and event.details["groups_removed"] == ["engineering"]


def test_a_group_based_policy_applies_to_directory_users(ldap_server: LiveServer) -> None:
    Namespace.objects.create(name="eng")
    AccessPolicy.objects.create(
        name="engineering-channels",
        text='permit(principal in Role::"engineering", action in [Action::"subscribe", Action::"publish"], '
        'resource is Channel)\nwhen { resource.namespace == "eng" };',
    )
    ada, _ = form_sign_in(ldap_server, "ada", password("ada"))
    grace, _ = form_sign_in(ldap_server, "grace", password("grace"))

    allowed = ws_subscribe(ldap_server, "eng.builds", cookie=f"sessionid={ada.cookies['sessionid']}")
    assert allowed["header"]["type"] == "ack", allowed
    refused = ws_subscribe(ldap_server, "eng.builds", cookie=f"sessionid={grace.cookies['sessionid']}")
    assert refused["header"]["type"] == "error" and refused["payload"]["code"] == "forbidden", refused


@pytest.mark.parametrize(
    ("username", "secret", "message", "reason"),
    [
        ("ada", "not-her-password", GENERIC, "wrong password"),
        ("nobody", "whatever-it-is", GENERIC, "unknown user"),
        ("mallory", password("mallory"), "not in the group allowed to sign in here", "not in the required group"),
    ],
    ids=["wrong-password", "unknown-user", "outside-the-required-group"],
)
def test_a_refused_sign_in_says_why_and_is_audited(
    ldap_server: LiveServer, username: str, secret: str, message: str, reason: str
) -> None:
    session, response = form_sign_in(ldap_server, username, secret)
    assert "/accounts/login/" in response.url and "sessionid" not in session.cookies
    assert message in form_errors(response)
    event = last_event("auth.login")
    assert event.outcome == "failure" and event.actor_name == username
    assert event.details == {"reason": reason, "provider": "ldap"}
    assert secret not in str(event.details)
    assert not get_user_model().objects.filter(username=username).exists()


def test_an_unreachable_directory_says_so_and_is_audited(
    directory: Directory, live_server_factory: Callable[..., LiveServer]
) -> None:
    nobody_listens = free_port()
    server = live_server_factory(
        **{**directory.settings_env(), "AUTH_LDAP_SERVER_URI": f"ldap://127.0.0.1:{nobody_listens}"}
    )
    try:
        _, response = form_sign_in(server, "ada", password("ada"))
    finally:
        server.stop()
    assert "directory server cannot be reached" in form_errors(response)
    event = last_event("auth.login")
    assert event.outcome == "failure" and event.details["provider"] == "ldap"
    assert event.details["reason"].startswith("directory unreachable")


def test_a_local_account_with_a_directory_name_is_not_taken_over(
    ldap_server: LiveServer, make_user: Callable[..., Any]
) -> None:
    local = make_user("grace")
    _, response = form_sign_in(ldap_server, "grace", password("grace"))
    assert "A local account already has this name" in form_errors(response)
    assert not ExternalIdentity.objects.filter(user=local).exists()
    assert not local.groups.exists()


@pytest.mark.browser
def test_a_directory_user_signs_in_through_the_page_in_chromium(page: Any, ldap_server: LiveServer) -> None:
    page.goto(f"{ldap_server.url}/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", password("ada"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{ldap_server.url}/")
    assert page.text_content("[data-testid=current-user]") == "ada"
