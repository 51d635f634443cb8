"""OpenID Connect sign-in against a real provider: a second webconnect server (django-oauth-toolkit's OIDC)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from websockets.exceptions import InvalidStatus

from federation.models import ExternalIdentity
from tests.conftest import LiveServer
from tests.federation.conftest import ws_subscribe
from tests.federation.provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    PROGRAM_ID,
    PROVIDER_PASSWORD,
    ProviderDatabase,
    new_provider_database,
    seed_script,
)
from webconnect.models import AuditEvent

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@dataclass
class Federation:
    provider: LiveServer  # served as http://localhost:<port>, so its cookies are not the site's (127.0.0.1)
    site: LiveServer
    database: ProviderDatabase
    provider_env: dict[str, str]

    @property
    def provider_url(self) -> str:
        return f"http://localhost:{self.provider.port}"

    @property
    def issuer(self) -> str:
        return f"{self.provider_url}/o"


@pytest.fixture(scope="module")
def federation(live_server_factory: Callable[..., LiveServer]) -> Iterator[Federation]:
    database = new_provider_database()
    env = database.env()
    database.manage(env, "migrate", "--noinput", "-v", "0")
    provider = live_server_factory(**env)
    issuer = f"http://localhost:{provider.port}/o"
    site = live_server_factory(
        OIDC_ISSUER=issuer,
        OIDC_CLIENT_ID=CLIENT_ID,
        OIDC_CLIENT_SECRET=CLIENT_SECRET,
        OIDC_PROVIDER_NAME="Example IdP",
        OIDC_SCOPES="openid",  # webconnect as a provider puts every claim in the ID token and userinfo
        OIDC_ACCEPT_BEARER="true",
    )
    database.manage(env, "shell", "-c", seed_script(site.url))
    yield Federation(provider, site, database, env)
    site.stop()
    provider.stop()
    shutil.rmtree(database.root, ignore_errors=True)


def test_the_sign_in_page_offers_the_provider(federation: Federation) -> None:
    page = requests.get(f"{federation.site.url}/accounts/login/", timeout=10).text
    assert "Sign in with Example IdP" in page


@pytest.mark.browser
def test_chromium_signs_in_through_the_provider_and_lands_home_with_its_groups(
    page: Any, federation: Federation
) -> None:
    site = federation.site.url
    page.goto(f"{site}/accounts/login/")
    page.click("[data-testid=sign-in-provider]")
    page.wait_for_url(f"{federation.provider_url}/accounts/login/**")  # the provider asks for its password
    page.fill("#id_username", "ada")
    page.fill("#id_password", PROVIDER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site}/")
    assert page.text_content("[data-testid=current-user]") == "ada"
    assert "Welcome, Ada Lovelace" in page.text_content("h1")

    identity = ExternalIdentity.objects.select_related("user").get(provider=f"oidc:{federation.issuer}")
    user = identity.user
    assert user.username == "ada" and user.email == "ada@example.org" and not user.has_usable_password()
    assert set(user.groups.values_list("name", flat=True)) == {"engineering", "oncall"}
    event = AuditEvent.objects.filter(action="auth.external_login", outcome="success").order_by("-id").first()
    assert event is not None and event.actor_id == user.pk
    assert event.details["provider"] == f"oidc:{federation.issuer}" and event.details["subject"] == identity.subject
    assert event.details["groups_granted"] == ["engineering", "oncall"]

    # Sign-out ends the site's session and, through the provider's end-session endpoint, the provider's.
    page.click("text=Sign out")
    page.wait_for_url(f"{site}/accounts/login/")
    page.goto(f"{site}/")
    assert "/accounts/login/" in page.url
    page.goto(f"{federation.provider_url}/")
    assert "/accounts/login/" in page.url


def test_a_provider_error_is_shown_and_audited_without_its_free_text(federation: Federation) -> None:
    session = requests.Session()
    response = session.get(
        f"{federation.site.url}/oidc/callback/",
        params={"error": "access_denied", "error_description": "<script>secret</script>", "state": "x"},
        timeout=10,
    )
    assert response.url == f"{federation.site.url}/accounts/login/"
    assert "Signing in with Example IdP did not work: the provider answered access_denied." in response.text
    assert "secret" not in response.text
    event = AuditEvent.objects.filter(action="auth.login", outcome="failure").order_by("-id").first()
    assert event is not None and event.details == {
        "provider": f"oidc:{federation.issuer}",
        "subject": "",
        "reason": "the provider answered access_denied",
    }


def test_a_callback_that_was_not_started_here_is_refused(federation: Federation) -> None:
    session = requests.Session()
    session.get(f"{federation.site.url}/accounts/login/", timeout=10)
    response = session.get(f"{federation.site.url}/oidc/callback/", params={"code": "c", "state": "s"}, timeout=10)
    assert response.url == f"{federation.site.url}/accounts/login/"
    assert "did not work" in response.text
    assert not get_user_model().objects.exists()


def provider_token(federation: Federation, scope: str) -> tuple[str, str]:
    """A JWT access token from the provider (client credentials: it acts for ada) and ada's subject there."""
    answer = requests.post(
        f"{federation.issuer}/token/",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(PROGRAM_ID, CLIENT_SECRET),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token = str(answer.json()["access_token"])
    assert token.count(".") == 2  # a JWT
    sub = requests.get(f"{federation.issuer}/userinfo/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return token, str(sub.json()["sub"])


def linked_account(federation: Federation, subject: str) -> Any:
    """The site's account for ada at the provider, as her first browser sign-in creates it."""
    user = get_user_model().objects.create_user("ada")
    ExternalIdentity.objects.create(user=user, provider=f"oidc:{federation.issuer}", subject=subject)
    return user


def test_a_provider_token_opens_the_websocket_with_its_scopes(federation: Federation) -> None:
    token, subject = provider_token(federation, "openid realtime:read")
    linked_account(federation, subject)
    answer = ws_subscribe(federation.site, "chat.lobby", token=token)
    assert answer["header"]["type"] == "ack", answer

    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(InvalidStatus) as refused:
        ws_subscribe(federation.site, "chat.lobby", token=tampered)
    assert refused.value.response.status_code == 403


def test_a_provider_token_for_someone_who_never_signed_in_here_is_refused(federation: Federation) -> None:
    token, _subject = provider_token(federation, "openid realtime:read")
    with pytest.raises(InvalidStatus) as refused:
        ws_subscribe(federation.site, "chat.lobby", token=token)
    assert refused.value.response.status_code == 403


def test_provider_tokens_are_refused_when_oidc_accept_bearer_is_off(
    federation: Federation, live_server_factory: Callable[..., LiveServer]
) -> None:
    site = live_server_factory(
        OIDC_ISSUER=federation.issuer, OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET=CLIENT_SECRET, OIDC_SCOPES="openid"
    )
    try:
        token, subject = provider_token(federation, "openid realtime:read")
        linked_account(federation, subject)
        with pytest.raises(InvalidStatus) as refused:
            ws_subscribe(site, "chat.lobby", token=token)
    finally:
        site.stop()
    assert refused.value.response.status_code == 403
