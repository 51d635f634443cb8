"""django-oauth-toolkit customisations: who a client-credentials token acts for, audit."""

from __future__ import annotations

from typing import Any

from oauth2_provider.models import get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator as BaseValidator

from webconnect.audit import audit_record
from webconnect.identity import stored_access_token, token_checksum


class OAuth2Validator(BaseValidator):  # type: ignore[misc]
    # OIDC claims; the username is what users see everywhere else.
    oidc_claim_scope = None

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "preferred_username": user.get_username(),
            "email": user.email,
            "name": user.get_full_name() or user.get_username(),
            # The user's group names, so a site signing in with webconnect can mirror them (and programs can read them).
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }

    def _create_access_token(self, expires: Any, request: Any, token: Any, source_refresh_token: Any = None) -> Any:
        # A client-credentials token acts for the user who owns the application
        # (its service account); DOT would otherwise leave it without a user and
        # every authorization check would treat it as anonymous.
        if request.grant_type == "client_credentials":
            request.user = request.client.user
        return super()._create_access_token(expires, request, token, source_refresh_token)

    def revoke_token(self, token: str, token_type_hint: str | None, request: Any, *args: Any, **kwargs: Any) -> None:
        owner = _token_owner(token)
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        if owner is not None:
            user, kind, token_id = owner
            audit_record(
                action="token.revoked",
                actor=user,
                target=f"{kind}:{token_id}",
                details={"client_id": request.client_id or ""},
            )


def _token_owner(token: str) -> tuple[Any, str, int] | None:
    access = stored_access_token(token)
    if access is not None:
        return access.user, "access_token", access.pk
    refresh = (
        get_refresh_token_model().objects.filter(token_checksum=token_checksum(token)).select_related("user").first()
    )
    if refresh is not None:
        return refresh.user, "refresh_token", refresh.pk
    return None
