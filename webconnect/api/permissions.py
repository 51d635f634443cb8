"""Token scopes for the REST API.

A request authenticated with an OAuth2 access token may do only what its
scopes allow; a browser session is the user acting directly and has every
scope. Scopes narrow what a user may do, never widen it: the authorization
service still decides on the resource.
"""

from __future__ import annotations

from typing import Any

from oauth2_provider.models import AbstractAccessToken
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"

    def __init__(self, required: list[str]) -> None:
        super().__init__(f"This token lacks the scope needed here: {' '.join(required)}.")
        self.required_scopes = required


def required_scopes_for(view: Any, method: str) -> list[str]:
    """`scope_prefix = "docs"` means docs:read for safe methods and docs:write otherwise."""
    explicit = getattr(view, "required_scopes", None)
    if explicit is not None:
        return list(explicit)
    prefix = getattr(view, "scope_prefix", None)
    if prefix is None:
        return []
    return [f"{prefix}:read" if method in SAFE_METHODS else f"{prefix}:write"]


class TokenHasRequiredScopes(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, AbstractAccessToken):
            return True  # session: the user is acting in the browser
        required = required_scopes_for(view, request.method or "GET")
        if required and not token.allow_scopes(required):
            raise InsufficientScope(required)
        return True


class IsStaff(BasePermission):
    message = "Only staff may use this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
