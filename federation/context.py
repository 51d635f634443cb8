from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse


def sign_in_providers(request: HttpRequest) -> dict[str, Any]:
    """The "Sign in with <name>" buttons of the sign-in page."""
    if not getattr(settings, "OIDC_ISSUER", ""):
        return {"sign_in_providers": []}
    url = reverse("federation:oidc-authenticate")
    return {"sign_in_providers": [{"name": settings.OIDC_PROVIDER_NAME, "url": url}]}
