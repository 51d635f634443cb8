"""Every page kind runs under the Content-Security-Policy with no violation in Chromium (issue 12, finding 7).

The policy allows only the project's own static scripts and styles; a violation
(an inline script or style, a foreign host, a blocked WebSocket) is reported by the
browser as a `securitypolicyviolation` event, which the page echoes to its console here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from collab import services as collab_services
from dashboards.demo import builtin_dashboards_ensure, producer_user
from tests.conftest import PASSWORD, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(
    "CSP-VIOLATION " + e.violatedDirective + " blocked=" + e.blockedURI + " at " + e.sourceFile + ":" + e.lineNumber
  );
});
"""


def test_every_page_kind_works_under_the_csp_without_a_violation(
    chromium: Any, live_server_factory: Callable[..., LiveServer], make_user: Any
) -> None:
    server = live_server_factory()
    root = make_user("cspadmin", superuser=True)
    document = collab_services.document_create(owner=root, title="Under CSP")
    version = collab_services.version_create(document=document, user=root, name="first")
    demo, _ = builtin_dashboards_ensure(owner=producer_user())

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{page.url}: {msg.text}")
            if "CSP-VIOLATION" in msg.text or "Content Security Policy" in msg.text
            else None
        ),
    )
    headers: dict[str, str] = {}

    def visit(path: str, ready: str | None = None) -> None:
        response = page.goto(f"{server.url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        headers[path] = response.headers.get("content-security-policy", "")
        if ready:
            page.wait_for_selector(ready)
        page.wait_for_timeout(300)  # late violations (scripts run after load) are reported too

    try:
        visit("/accounts/login/")
        page.fill("#id_username", "cspadmin")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/")

        visit("/")
        visit("/docs/")
        # The editor: Tiptap, the collaboration caret and the WebSocket (connect-src 'self' covers ws:).
        visit(f"/docs/{document.pk}/", "[data-testid=connection-status][data-state=connected]")
        page.click(".ProseMirror")
        page.keyboard.type("typed under a strict policy")
        # A second tab of the same user is a remote peer: its caret and selection are drawn here.
        other = context.new_page()
        other.on("console", lambda msg: problems.append(f"tab 2: {msg.text}") if "CSP" in msg.text else None)
        other.goto(f"{server.url}/docs/{document.pk}/")
        other.wait_for_selector("[data-testid=connection-status][data-state=connected]")
        other.click(".ProseMirror")
        other.keyboard.press("Control+A")
        page.wait_for_selector(".ProseMirror .collaboration-carets__caret")
        page.wait_for_timeout(300)
        other.close()
        page.click("[data-testid=share-open]")
        page.wait_for_selector("[data-testid=share-who]")
        visit(f"/docs/{document.pk}/history/")
        visit(f"/docs/{document.pk}/versions/{version.pk}/")
        visit("/dashboards/")
        # uPlot and gridstack, live over the socket.
        visit(f"/dashboards/{demo.pk}/", "[data-testid=live-status].live")
        assert page.locator("canvas").count() >= 1
        visit("/accounts/password_change/")
        visit("/api/docs/", ".swagger-ui .opblock")
        for path in [
            "/admin/",
            "/admin/webconnect/auditevent/",
            f"/admin/auth/user/{root.pk}/change/",
            "/admin/policies/accesspolicy/",
            "/admin/policies/accesspolicy/add/",
            "/admin/policies/accesspolicy/simulator/",
            "/admin/policies/accesspolicy/import/",
        ]:
            visit(path)
        # The policy widget's picker (a static script now) still searches and inserts.
        visit("/admin/policies/accesspolicy/add/")
        page.fill(".principal-search", "cspad")
        page.wait_for_selector(".principal-choice")
    finally:
        context.close()

    assert problems == [], "\n".join(problems)
    for path, policy in headers.items():
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "object-src 'none'" in policy and "base-uri 'self'" in policy, path
        assert "unsafe-inline" not in policy, path
