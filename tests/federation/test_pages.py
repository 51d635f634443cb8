"""Without an identity provider configured, nothing of it shows or answers."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_without_oidc_the_sign_in_page_has_no_provider_button_and_its_urls_are_404(client: Client) -> None:
    assert b"Sign in with" not in client.get("/accounts/login/").content
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "c", "state": "s"}).status_code == 404
