from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def sign_in_providers(request: HttpRequest) -> dict[str, Any]:
    """The "Sign in with <name>" buttons of the sign-in page."""
    if not getattr(settings, "OIDC_ISSUER", ""):
        return {"sign_in_providers": []}
    return {"sign_in_providers": [{"name": getattr(settings, "OIDC_PROVIDER_NAME", ""), "url": "/oidc/authenticate/"}]}
