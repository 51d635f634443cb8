"""Every API error is JSON with a human message and a stable machine code."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling and logging take over
    data = response.data
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        data = {**data, "detail": str(detail), "code": getattr(detail, "code", "error")}
    else:
        data = {"detail": "Invalid input.", "code": "invalid", "errors": data}
    if getattr(exc, "required_scopes", None):
        data["required_scopes"] = exc.required_scopes  # type: ignore[attr-defined]
    response.data = data
    return response
