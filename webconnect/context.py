"""Who is acting and from where, for code far from the request (signals, audit)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

from webconnect.identity import request_client_ip

current_client_ip: ContextVar[str | None] = ContextVar("current_client_ip", default=None)


class RequestContextMiddleware:
    """Makes the client IP of the current request available to audit writers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_client_ip.set(request_client_ip(request))
        try:
            return self.get_response(request)
        finally:
            current_client_ip.reset(token)
