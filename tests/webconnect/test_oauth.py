"""OAuth2 for programs: createtoken, scopes on the API, PKCE, client credentials, revocation."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from io import StringIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from oauth2_provider.models import get_access_token_model, get_application_model

from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db
Application = get_application_model()
REDIRECT = "https://client.example/callback"


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class TestCreateToken:
    def test_it_prints_only_a_token_that_authenticates_the_api(
        self, client: Client, alice: Any, mint_token: Callable[..., str]
    ) -> None:
        out = StringIO()
        call_command("createtoken", "alice", scopes="realtime:read realtime:write", stdout=out)
        token = out.getvalue().strip()
        assert out.getvalue().count("\n") == 1 and " " not in token and len(token) >= 32
        response = client.get("/api/me/", **bearer(token))
        assert response.status_code == 200
        assert response.json() == {
            "id": alice.pk,
            "username": "alice",
            "is_staff": False,
            "auth_method": "bearer",
            "scopes": ["realtime:read", "realtime:write"],
        }
        assert AuditEvent.objects.filter(action="token.issued", actor_name="alice").exists()

    def test_the_token_is_not_stored_in_plaintext(self, alice: Any, mint_token: Callable[..., str]) -> None:
        token = mint_token("alice", "realtime:read")
        stored = get_access_token_model().objects.get()
        assert stored.token != token
        assert stored.token_checksum == hashlib.sha256(token.encode()).hexdigest()

    def test_it_rejects_unknown_scopes_and_users(self, alice: Any) -> None:
        with pytest.raises(CommandError, match="Unknown scope"):
            call_command("createtoken", "alice", scopes="realtime:everything", stdout=StringIO())
        with pytest.raises(CommandError, match="No active user"):
            call_command("createtoken", "mallory", scopes="realtime:read", stdout=StringIO())


class TestScopes:
    def test_a_token_without_the_needed_scope_is_refused_with_403(
        self, client: Client, admin_user: Any, mint_token: Callable[..., str]
    ) -> None:
        token = mint_token("root", "realtime:read")
        response = client.post("/api/audit/verify/", **bearer(token))
        assert response.status_code == 403
        body = response.json()
        assert body["code"] == "insufficient_scope"
        assert body["required_scopes"] == ["policies:admin"]

    def test_the_right_scope_lets_staff_verify_the_chain(
        self, client: Client, admin_user: Any, mint_token: Callable[..., str]
    ) -> None:
        token = mint_token("root", "policies:admin")
        response = client.post("/api/audit/verify/", **bearer(token))
        assert response.status_code == 200
        assert response.json()["ok"] is True

    def test_a_scope_does_not_make_a_user_staff(
        self, client: Client, alice: Any, mint_token: Callable[..., str]
    ) -> None:
        token = mint_token("alice", "policies:admin")
        assert client.get("/api/audit/events/", **bearer(token)).status_code == 403

    def test_no_credentials_get_401_with_a_json_body(self, client: Client) -> None:
        response = client.get("/api/me/")
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_an_expired_token_is_refused(self, client: Client, alice: Any, mint_token: Callable[..., str]) -> None:
        token = mint_token("alice", "realtime:read", expires=1)
        get_access_token_model().objects.update(expires="2000-01-01T00:00:00Z")
        assert client.get("/api/me/", **bearer(token)).status_code == 401

    def test_a_token_in_the_query_string_is_not_accepted(
        self, client: Client, alice: Any, mint_token: Callable[..., str]
    ) -> None:
        token = mint_token("alice", "realtime:read")
        assert client.get(f"/api/me/?access_token={token}").status_code == 401


class TestClientCredentials:
    def make_service_app(self, owner: Any) -> tuple[Any, str]:
        secret = secrets.token_urlsafe(32)
        app = Application.objects.create(
            name="sensor fleet",
            user=owner,
            client_type="confidential",
            authorization_grant_type="client-credentials",
            client_secret=secret,
        )
        return app, secret

    def test_a_client_credentials_token_acts_for_the_application_owner_and_can_be_revoked(
        self, client: Client, alice: Any
    ) -> None:
        app, secret = self.make_service_app(alice)
        response = client.post(
            "/o/token/",
            {
                "grant_type": "client_credentials",
                "scope": "realtime:write",
                "client_id": app.client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 200, response.content
        token = response.json()["access_token"]
        me = client.get("/api/me/", **bearer(token))
        assert me.status_code == 200 and me.json()["username"] == "alice"

        introspection = client.post(
            "/o/introspect/",
            {"token": token},
            HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{app.client_id}:{secret}".encode()).decode(),
        )
        assert introspection.json()["active"] is True

        revoked = client.post("/o/revoke_token/", {"token": token, "client_id": app.client_id, "client_secret": secret})
        assert revoked.status_code == 200
        assert client.get("/api/me/", **bearer(token)).status_code == 401
        assert AuditEvent.objects.filter(action="token.issued", actor_name="alice").exists()
        assert AuditEvent.objects.filter(action="token.revoked", actor_name="alice").exists()

    def test_a_wrong_client_secret_is_refused(self, client: Client, alice: Any) -> None:
        app, _ = self.make_service_app(alice)
        response = client.post(
            "/o/token/", {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": "wrong"}
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


class TestAuthorizationCode:
    @pytest.fixture
    def app(self, admin_user: Any) -> Any:
        return Application.objects.create(
            name="notebook",
            user=admin_user,
            client_type="public",
            authorization_grant_type="authorization-code",
            redirect_uris=REDIRECT,
            skip_authorization=True,
            algorithm="RS256",
        )

    def authorize(self, client: Client, app: Any, **extra: str) -> Any:
        params = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid realtime:read",
            **extra,
        }
        return client.get("/o/authorize/", params)

    def test_pkce_is_required(self, client: Client, alice: Any, app: Any) -> None:
        client.force_login(alice)
        response = self.authorize(client, app)
        assert response.status_code == 302
        query = parse_qs(urlsplit(response.url).query)
        assert query["error"] == ["invalid_request"]
        assert "code" not in query

    def test_the_code_flow_issues_rotating_refresh_tokens(self, client: Client, alice: Any, app: Any) -> None:
        client.force_login(alice)
        verifier, challenge = pkce_pair()
        response = self.authorize(client, app, code_challenge=challenge, code_challenge_method="S256")
        code = parse_qs(urlsplit(response.url).query)["code"][0]
        tokens = client.post(
            "/o/token/",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": app.client_id,
                "code_verifier": verifier,
            },
        ).json()
        assert {"access_token", "refresh_token", "id_token"} <= set(tokens)
        assert client.get("/api/me/", **bearer(tokens["access_token"])).json()["username"] == "alice"

        refreshed = client.post(
            "/o/token/",
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": app.client_id},
        ).json()
        assert refreshed["refresh_token"] != tokens["refresh_token"]
        replay = client.post(
            "/o/token/",
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": app.client_id},
        )
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    def test_a_wrong_code_verifier_is_refused(self, client: Client, alice: Any, app: Any) -> None:
        client.force_login(alice)
        _, challenge = pkce_pair()
        response = self.authorize(client, app, code_challenge=challenge, code_challenge_method="S256")
        code = parse_qs(urlsplit(response.url).query)["code"][0]
        result = client.post(
            "/o/token/",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": app.client_id,
                "code_verifier": pkce_pair()[0],
            },
        )
        assert result.status_code == 400


def test_openid_discovery_is_published(client: Client) -> None:
    response = client.get("/o/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"].endswith("/o/token/")
    assert "S256" in config["code_challenge_methods_supported"]


def test_the_openapi_schema_and_docs_page_are_served(client: Client, alice: Any) -> None:
    client.force_login(alice)  # the docs need sign-in unless API_DOCS_PUBLIC
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/me/" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn.jsdelivr" not in docs.content and b"unpkg" not in docs.content
