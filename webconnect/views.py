from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from webconnect.audit import audit_record
from webconnect.forms import ThrottledAuthenticationForm
from webconnect.throttling import login_delay

logger = logging.getLogger(__name__)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database()}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis()
    ready = all(check == "ok" for check in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readiness: database unreachable: %s", exc)
        return f"error: {type(exc).__name__}"


def _check_redis() -> str:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    except redis.RedisError as exc:
        logger.warning("readiness: redis unreachable: %s", exc)
        return f"error: {type(exc).__name__}"


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "throttled", False):
            response.status_code = 429
        return response


class LogoutView(auth_views.LogoutView):
    """Signing out is a POST; a GET (a bookmark, a typed URL) shows a page with the sign-out button."""

    http_method_names = ["get", "post", "options"]
    template_name = "registration/logout.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return render(request, self.template_name)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Signed in through an identity provider that offers sign-out (federation/): its
        # end-session page ends that session too, then sends the browser back here.
        provider_sign_out = request.session.get("sign_out_redirect")
        response: HttpResponse = super().post(request, *args, **kwargs)
        return HttpResponseRedirect(provider_sign_out) if provider_sign_out else response


async def _slow_down(request: HttpRequest) -> None:
    """An account past its failure ceiling answers late, not never (webconnect/throttling.py).

    The wait is an asyncio sleep, so a flood of slowed attempts holds no thread.
    """
    if request.method != "POST":
        return
    delay = await sync_to_async(login_delay)(username=str(request.POST.get("username", "")))
    if delay:
        await asyncio.sleep(delay)


_accounts_login = LoginView.as_view()


async def sign_in(request: HttpRequest) -> HttpResponseBase:
    await _slow_down(request)
    response: HttpResponseBase = await sync_to_async(_accounts_login)(request)
    return response


async def admin_sign_in(request: HttpRequest) -> HttpResponse:
    """The admin site's own login view (its form is throttled, see webconnect/admin.py), slowed and 429 when refused."""
    await _slow_down(request)
    response: HttpResponse = await sync_to_async(admin.site.login)(request)
    form = (getattr(response, "context_data", None) or {}).get("form")
    if getattr(form, "throttled", False):
        response.status_code = 429
    return response


class PasswordChangeView(auth_views.PasswordChangeView):
    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit_record(action="auth.password_change", actor=self.request.user, target=f"user:{self.request.user.pk}")
        return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit_record(action="auth.password_reset", actor=form.user, target=f"user:{form.user.pk}")
        return response


class ApiDocsAccess(BasePermission):
    """The schema is for signed-in callers (session or token) unless API_DOCS_PUBLIC opens it."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(settings.API_DOCS_PUBLIC or (request.user and request.user.is_authenticated))


api_schema = SpectacularAPIView.as_view(permission_classes=[ApiDocsAccess])
# The split view serves swagger-ui's init script as a file (no inline script under the CSP).
_api_docs = SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[ApiDocsAccess])


def api_docs(request: HttpRequest) -> HttpResponseBase:
    if not settings.API_DOCS_PUBLIC and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())  # a browser is sent to sign in
    response: HttpResponseBase = _api_docs(request)
    return response
