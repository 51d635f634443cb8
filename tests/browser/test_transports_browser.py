"""The pages' client (static/js/realtime.js, the build of clients/js/) in Chromium when no WebSocket
gets through: it falls back to Server-Sent Events and the demo dashboard still moves."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards.demo import builtin_dashboards_ensure, producer_user
from tests.browser.test_dashboards_browser import open_page, sign_in, start_producer
from tests.conftest import ARTIFACTS, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# As a proxy that refuses upgrades looks to a page: every WebSocket fails before it opens.
NO_WEBSOCKETS = """
window.__websocketsTried = 0;
window.WebSocket = class {
  constructor() {
    window.__websocketsTried += 1;
    setTimeout(() => {
      if (this.onerror) this.onerror(new Event("error"));
      if (this.onclose) this.onclose({ code: 1006, reason: "" });
    }, 5);
  }
  send() {}
  close() {}
};
"""


def test_without_websockets_the_dashboard_streams_over_sse(page: Any, live_daphne: LiveServer, make_user: Any) -> None:
    make_user("viewer")
    demo, _ = builtin_dashboards_ensure(owner=producer_user())
    ARTIFACTS.mkdir(exist_ok=True)
    producer = start_producer(live_daphne, seconds=40)
    streams: list[str] = []

    def seen(request: Any) -> None:
        if "/events/" in request.url:
            streams.append(request.url)

    page.on("request", seen)
    try:
        sign_in(page, live_daphne, "viewer")
        page.add_init_script(NO_WEBSOCKETS)
        open_page(page, f"{live_daphne.url}/dashboards/{demo.pk}/")
        page.wait_for_selector("[data-testid=live-status].live")
        page.wait_for_function("window.dashboardStats && window.dashboardStats.received >= 3", timeout=45_000)
        first = page.evaluate("window.dashboardStats.received")
        page.wait_for_function(f"window.dashboardStats.received > {first} + 3", timeout=20_000)
        assert page.evaluate("window.__websocketsTried") >= 1
        assert any("/api/channels/demo.sensors/events/" in url for url in streams), streams
        line = demo.widgets.get(kind="line")
        assert page.locator(f"[data-testid=widget-{line.pk}] canvas").count() >= 1
    finally:
        producer.terminate()
        producer.wait(timeout=10)
