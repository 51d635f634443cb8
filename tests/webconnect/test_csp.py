"""The Content-Security-Policy header on every response, and the API docs behind sign-in (issue 12, finding 7)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/healthz", "/no-such-page/", "/api/schema/"])
def test_every_response_carries_the_policy(client: Client, path: str) -> None:
    response = client.get(path)
    assert set(response["Content-Security-Policy"].split("; ")) == set(POLICY.split("; "))


def test_the_pages_carry_no_inline_script_or_style(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    for path in ["/", "/docs/", "/dashboards/", "/api/docs/", "/admin/policies/accesspolicy/add/"]:
        html = client.get(path).content.decode()
        assert "<style" not in html and ' style="' not in html, path
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert " src=" in tag or 'type="application/json"' in tag, (path, tag)


def test_a_stranger_is_sent_to_sign_in_for_the_api_docs_and_refused_the_schema(client: Client) -> None:
    docs = client.get("/api/docs/")
    assert docs.status_code == 302 and docs.url == "/accounts/login/?next=/api/docs/"
    assert client.get("/api/schema/").status_code in (401, 403)


def test_a_signed_in_user_reads_the_api_docs_and_schema(client: Client, alice: Any) -> None:
    client.force_login(alice)
    assert client.get("/api/docs/").status_code == 200
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200 and "openapi" in schema.json()
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


def test_api_docs_public_opens_them_to_strangers(client: Client, settings: Any) -> None:
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/schema/").status_code == 200
