"""The demo dashboard in Chromium: points arrive live; a viewer without access to a channel sees "no access"."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from django.apps import apps

from dashboards import services
from dashboards.demo import builtin_dashboards_ensure, producer_user
from dashboards.models import SeriesPoint
from tests.conftest import ARTIFACTS, PASSWORD, ROOT, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, server: LiveServer, username: str) -> None:
    page.goto(f"{server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")


def open_page(page: Any, url: str) -> None:
    """Open `url`, waiting out the server's policy reload after the previous test's database flush.

    A transactional test empties the policy table between tests; the live server
    notices the re-installed default policies within its poll interval, and until
    then it (correctly) denies everything.
    """
    deadline = time.monotonic() + 15
    while True:
        response = page.goto(url)
        ready = response is None or response.status != 404
        # Namespaces created by this test reach the server's cache within a few seconds.
        if ready and "does not exist" not in (page.text_content("[data-testid=dash-grid]") or ""):
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.3)


def start_producer(server: LiveServer, seconds: float) -> subprocess.Popen[bytes]:
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "WEBCONNECT_TEST_DATABASE_NAME": str(connection.settings_dict["NAME"]),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    command = [sys.executable, "manage.py", "demo_producer", "--url", server.url, "--interval", "0.2"]
    return subprocess.Popen(
        [*command, "--seconds", str(seconds), "--seed", "7"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(ARTIFACTS / "demo-producer.log").open("wb"),
    )


def test_the_demo_dashboard_receives_points_live(page: Any, live_daphne: LiveServer, make_user: Any) -> None:
    make_user("viewer")
    demo, _ = builtin_dashboards_ensure(owner=producer_user())
    ARTIFACTS.mkdir(exist_ok=True)
    producer = start_producer(live_daphne, seconds=40)
    try:
        sign_in(page, live_daphne, "viewer")
        open_page(page, f"{live_daphne.url}/dashboards/{demo.pk}/")
        page.wait_for_selector("[data-testid=live-status].live")
        page.wait_for_function("window.dashboardStats && window.dashboardStats.received >= 3", timeout=45_000)
        first = page.evaluate("window.dashboardStats.received")
        page.wait_for_function(f"window.dashboardStats.received > {first} + 3", timeout=20_000)
        stats = page.evaluate("window.dashboardStats")
        assert stats["drawn"] > 0
        # Every numeric widget shows a number, and none reports a problem.
        stat = demo.widgets.get(kind="stat")
        value = page.text_content(f"[data-testid=widget-{stat.pk}] .stat-value")
        assert value and value[0].isdigit() and "items/min" in value
        log = demo.widgets.get(kind="log")
        page.wait_for_selector(f"[data-testid=widget-{log.pk}] .log-line", timeout=20_000)
        for widget in demo.widgets.all():
            assert page.text_content(f"[data-testid=widget-{widget.pk}] [data-testid=widget-status]") == ""
        line = demo.widgets.get(kind="line")
        assert page.locator(f"[data-testid=widget-{line.pk}] canvas").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "dashboards-demo-live.png"), full_page=True)
        # The server's recorder stored the same readings as series points for history.
        deadline = time.monotonic() + 10
        while not SeriesPoint.objects.filter(channel="demo.sensors").exists() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert SeriesPoint.objects.filter(channel="demo.sensors", path="pressure").exists()
    finally:
        producer.terminate()
        producer.wait(timeout=10)


def test_a_viewer_without_access_to_a_channel_sees_no_access(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    owner = make_user("owner", staff=True)
    make_user("viewer2")
    builtin_dashboards_ensure(owner=producer_user())
    dashboard = services.dashboard_create(owner=owner, title="Mixed", visibility="public")
    secret = services.widget_create(
        dashboard=dashboard, kind="line", title="Platform load", channel="sys.ops", value_paths=["connections"]
    )
    open_ = services.widget_create(
        dashboard=dashboard, kind="stat", title="Pressure", channel="demo.sensors", value_paths=["pressure"]
    )
    sign_in(page, live_daphne, "viewer2")
    open_page(page, f"{live_daphne.url}/dashboards/{dashboard.pk}/")
    assert page.text_content(f"[data-testid=widget-{secret.pk}] [data-testid=widget-status]") == "no access"
    assert page.text_content(f"[data-testid=widget-{open_.pk}] [data-testid=widget-status]") == ""
    html = page.content()
    assert "sys.ops" not in html and '"connections"' not in html
    page.wait_for_selector("[data-testid=live-status].live")
    page.screenshot(path=str(ARTIFACTS / "dashboards-no-access.png"), full_page=True)


def test_a_burst_is_coalesced_to_the_latest_value_per_frame(
    page: Any, live_daphne: LiveServer, make_user: Any, mint_token: Any
) -> None:
    import json
    import urllib.request

    owner = make_user("burster", staff=True)
    builtin_dashboards_ensure(owner=producer_user())
    dashboard = services.dashboard_create(owner=owner, title="Burst")
    stat = services.widget_create(dashboard=dashboard, kind="stat", title="V", channel="demo.burst", value_paths=["v"])
    line = services.widget_create(dashboard=dashboard, kind="line", title="L", channel="demo.burst", value_paths=["v"])
    token = mint_token("burster", "dashboards:write realtime:write")
    sign_in(page, live_daphne, "burster")
    open_page(page, f"{live_daphne.url}/dashboards/{dashboard.pk}/")
    page.wait_for_selector("[data-testid=live-status].live")
    page.wait_for_timeout(300)  # the subscribe acks are in
    burst = 500
    request = urllib.request.Request(  # noqa: S310  (the local test server)
        f"{live_daphne.url}/api/dashboards/ingest/",
        data=json.dumps({"channel": "demo.burst", "messages": [{"v": i} for i in range(burst)]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert json.loads(response.read())["published"] == burst
    page.wait_for_function(f"window.dashboardStats.received >= {burst}")
    page.wait_for_function(
        f"document.querySelector('[data-testid=widget-{stat.pk}] .stat-value').textContent.startsWith('{burst - 1}')"
    )
    stats = page.evaluate("window.dashboardStats")
    # Two widgets x 500 values arrived; far fewer were drawn, one per series per animation frame.
    assert stats["coalesced"] > 0
    assert stats["drawn"] + stats["coalesced"] == 2 * burst
    assert stats["drawn"] <= 2 * stats["frames"]
    points = page.evaluate(f"window.dashboardWidgets[{line.pk}].xs.length")
    assert points <= stats["frames"]


def publish_cli(server: LiveServer, token: str, channel: str, payload: str) -> None:
    env = {**os.environ, "WEBCONNECT_TOKEN": token}
    command = [sys.executable, "-m", "webconnect_client", "--url", f"{server.ws_url}/ws/", "publish", channel, payload]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=30)


def add_widget(page: Any, kind: str, title: str, channel: str, paths: str) -> None:
    page.select_option("#widget-form [name=kind]", kind)
    page.fill("#widget-form [name=title]", title)
    page.fill("#widget-form [name=channel]", channel)
    page.fill("#widget-form [name=value_paths]", paths)
    page.click("[data-testid=widget-submit]")


def test_a_user_builds_a_dashboard_in_the_page_without_reloads_and_watches_cli_data_live(
    page: Any, live_daphne: LiveServer, make_user: Any, mint_token: Any
) -> None:
    from dashboards.models import Dashboard

    make_user("builder")
    token = mint_token("builder", "realtime:read realtime:write")
    sign_in(page, live_daphne, "builder")
    # The chat namespace again (a transactional test before this one emptied the table).
    importlib.import_module("webconnect.migrations.0003_default_namespaces").install(apps, None)
    demo, _ = builtin_dashboards_ensure(owner=producer_user())
    open_page(page, f"{live_daphne.url}/dashboards/{demo.pk}/")  # the server has loaded the policies
    page.goto(f"{live_daphne.url}/dashboards/")
    page.fill("[data-testid=new-title]", "My plant")
    page.click("[data-testid=create]")
    page.wait_for_selector("[data-testid=dashboard-title]")
    dashboard = Dashboard.objects.get(title="My plant")

    # A new dashboard says how to start, not "no live channels" on a blank page.
    empty = page.locator("[data-testid=empty-state]")
    assert empty.is_visible()
    assert "no widgets yet" in (empty.text_content() or "")
    assert page.text_content("[data-testid=live-status]") == "no widgets yet"
    assert page.is_hidden("[data-testid=widget-form]")
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty-state.png"), full_page=True)

    # From here on the page never navigates: a marker on window survives every step.
    page.evaluate("window.__sameDocument = 'yes'")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.click("[data-testid=empty-add]")
    assert page.is_visible("[data-testid=widget-form]")
    for kind, title, paths in (("line", "Flow", "flow,level"), ("stat", "Level", "level"), ("gauge", "Valve", "valve")):
        count = len(dashboard.widgets.all())
        add_widget(page, kind, title, "chat.plant", paths)
        page.wait_for_function(f"document.querySelectorAll('#dash-grid .grid-stack-item').length === {count + 1}")
        assert page.is_visible("[data-testid=widget-form]"), "still in edit mode"
        assert title in (page.text_content("[data-testid=widget-form-done]") or "")
    assert page.is_hidden("[data-testid=empty-state]")
    widgets = {w.title: w for w in dashboard.widgets.all()}
    assert set(widgets) == {"Flow", "Level", "Valve"}

    # A bad widget is refused with the API's reason next to the field and in the summary.
    add_widget(page, "gauge", "Broken", "no-namespace", "x")
    page.wait_for_function(
        "document.querySelector('[data-testid=widget-form-error]').textContent.includes('invalid channel')"
    )
    assert "invalid channel" in (page.text_content("#widget-form [data-error-for=channel]") or "")
    assert page.get_attribute("#widget-form [name=channel]", "aria-invalid") == "true"
    add_widget(page, "stat", "Two values", "chat.plant", "flow, level")
    page.wait_for_function(
        "document.querySelector('[data-error-for=value_paths]').textContent.includes('exactly one value path')"
    )
    assert set(dashboard.widgets.values_list("title", flat=True)) == {"Flow", "Level", "Valve"}

    # Change a widget in place: the title and unit change, the widget stays where it is.
    valve = page.locator(f"[data-testid=widget-{widgets['Valve'].pk}]")
    valve.get_by_role("button", name="change Valve").click()
    assert page.input_value("#widget-form [name=title]") == "Valve"
    page.fill("#widget-form [name=title]", "Valve opening")
    page.fill("#widget-form [name=unit]", "%")
    page.click("[data-testid=widget-submit]")
    valve.locator("h2", has_text="Valve opening").wait_for()
    widgets["Valve"].refresh_from_db()
    assert widgets["Valve"].title == "Valve opening" and widgets["Valve"].options == {"unit": "%"}

    # Remove asks once more, then the widget goes (from the page and the server).
    extra = services.widget_create(
        dashboard=dashboard, kind="log", title="Scratch", channel="chat.plant", value_paths=[]
    )
    assert not page.locator(f"[data-testid=widget-{extra.pk}]").count()  # added elsewhere: not on this page yet
    flow = page.locator(f"[data-testid=widget-{widgets['Flow'].pk}]")
    flow.get_by_role("button", name="remove Flow").click()
    assert flow.get_by_role("button", name="remove Flow").text_content() == "Remove?"
    flow.get_by_role("button", name="remove Flow").click()
    flow.wait_for(state="detached")
    assert not dashboard.widgets.filter(pk=widgets["Flow"].pk).exists()
    extra.delete()
    assert page.evaluate("window.__sameDocument") == "yes"
    assert navigations == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-editor-added.png"), full_page=True)

    # Data published from the CLI reaches the widgets that were added without a reload.
    page.wait_for_selector("[data-testid=live-status].live")
    page.wait_for_timeout(300)  # the subscribe ack is in
    for i in range(5):
        publish_cli(live_daphne, token, "chat.plant", f'{{"flow": {10 + i}, "level": {50 + i}, "valve": {i * 20}}}')
    page.wait_for_function(
        f"document.querySelector('[data-testid=widget-{widgets['Level'].pk}] .stat-value').textContent.startsWith('54')"
    )
    assert page.text_content(f"[data-testid=widget-{widgets['Valve'].pk}] .gauge-value") == "80.00 %"
    # Bad data: the widget says what is wrong, and keeps its last good value.
    publish_cli(live_daphne, token, "chat.plant", '{"flow": 1, "level": "high", "valve": 10}')
    level_status = f"[data-testid=widget-{widgets['Level'].pk}] [data-testid=widget-status]"
    page.wait_for_function(f"document.querySelector('{level_status}').textContent.includes('is not a number')")
    assert "value at 'level' is not a number: \"high\"" in (page.text_content(level_status) or "")
    assert page.text_content(f"[data-testid=widget-{widgets['Level'].pk}] .stat-value", timeout=1000) == "54.00"
    assert page.evaluate("window.__sameDocument") == "yes"
    page.screenshot(path=str(ARTIFACTS / "dashboards-built-by-user.png"), full_page=True)


def grid_box(page: Any, widget_id: int) -> tuple[int, int, int, int]:
    """The widget's (x, y, w, h) as the grid shows it."""
    attrs = page.evaluate(
        """(id) => { const n = document.querySelector(`[data-widget="${id}"]`);
                     return ["gs-x", "gs-y", "gs-w", "gs-h"].map(a => Number(n.getAttribute(a) || 0)); }""",
        widget_id,
    )
    return tuple(attrs)  # type: ignore[return-value]


def drag(page: Any, source: Any, dx: float, dy: float) -> None:
    source.scroll_into_view_if_needed()
    box = source.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 5, y + 5, steps=2)
    page.mouse.move(x + dx, y + dy, steps=15)
    page.mouse.up()


def wait_for_layout(dashboard: Any, expected: dict[int, tuple[int, int, int, int]]) -> list[dict[str, int]]:
    deadline = time.monotonic() + 10
    while True:
        dashboard.refresh_from_db()
        boxes = {item["id"]: (item["x"], item["y"], item["w"], item["h"]) for item in dashboard.layout}
        if all(boxes.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
            assert {k: boxes.get(k) for k in expected} == expected
            return list(dashboard.layout)
        time.sleep(0.2)


def test_an_editor_drags_and_resizes_widgets_and_the_layout_is_kept(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    owner = make_user("arranger")
    builtin_dashboards_ensure(owner=producer_user())
    dashboard = services.dashboard_create(owner=owner, title="Arrange me")
    a = services.widget_create(
        dashboard=dashboard, kind="stat", title="A", channel="demo.sensors", value_paths=["pressure"]
    )
    b = services.widget_create(
        dashboard=dashboard, kind="stat", title="B", channel="demo.sensors", value_paths=["throughput"]
    )
    c = services.widget_create(
        dashboard=dashboard, kind="line", title="C", channel="demo.sensors", value_paths=["temp.line1"]
    )
    sign_in(page, live_daphne, "arranger")
    open_page(page, f"{live_daphne.url}/dashboards/{dashboard.pk}/")
    assert [grid_box(page, w.pk) for w in (a, b, c)] == [(0, 0, 4, 2), (4, 0, 4, 2), (0, 2, 12, 2)]
    patches: list[str] = []
    page.on("request", lambda r: patches.append(r.url) if r.method == "PATCH" else None)

    # Not editing: the grid is static, dragging does nothing.
    drag(page, page.locator(f"[data-testid=widget-{a.pk}] header h2"), 500, 0)
    page.wait_for_timeout(600)
    assert grid_box(page, a.pk) == (0, 0, 4, 2) and patches == []

    page.click("[data-testid=edit-toggle]")
    column = page.evaluate("document.getElementById('dash-grid').getBoundingClientRect().width / 12")
    row = 150
    # Drag A to the right of B (columns 8-11).
    drag(page, page.locator(f"[data-testid=widget-{a.pk}] header h2"), column * 8, 0)
    page.wait_for_function(f"document.querySelector('[data-widget=\"{a.pk}\"]').getAttribute('gs-x') === '8'")
    # Resize C from its corner: half as wide, one row taller.
    drag(page, page.locator(f"[data-testid=widget-{c.pk}] .ui-resizable-se"), -column * 6, row * 0.6)
    page.wait_for_function(f"document.querySelector('[data-widget=\"{c.pk}\"]').getAttribute('gs-w') === '6'")
    page.wait_for_function("document.querySelector('[data-testid=layout-status]').textContent === 'Layout saved'")
    assert grid_box(page, a.pk) == (8, 0, 4, 2)
    assert grid_box(page, c.pk)[2:] == (6, 3)
    # Half as wide, C reloads its history in buckets twice as wide (one point per ~2 px).
    page.wait_for_function(
        f"performance.getEntriesByType('resource').some(e => e.name.includes('/widgets/{c.pk}/series/')"
        " && e.name.includes('step=2000'))"
    )
    # What the page shows is what the server keeps (B made room for A wherever the grid put it).
    shown = {w.pk: grid_box(page, w.pk) for w in (a, b, c)}
    layout = wait_for_layout(dashboard, shown)
    assert [item["id"] for item in layout] == sorted(shown, key=lambda k: (shown[k][1], shown[k][0]))
    # Several changes in a row are saved in few requests (debounced), not one per mouse move.
    assert 1 <= len(patches) <= 3
    page.mouse.move(5, 5)
    page.screenshot(path=str(ARTIFACTS / "dashboard-editor.png"), full_page=True)

    # The keyboard works too: the grip with arrow keys moves, with Shift + arrow keys resizes.
    b_box = grid_box(page, b.pk)
    page.locator(f"[data-testid=widget-{b.pk}] .widget-grip").focus()
    page.keyboard.press("Shift+ArrowRight")
    page.wait_for_function(
        f"document.querySelector('[data-widget=\"{b.pk}\"]').getAttribute('gs-w') === '{b_box[2] + 1}'"
    )
    page.wait_for_function("document.querySelector('[data-testid=layout-status]').textContent === 'Layout saved'")
    shown = {w.pk: grid_box(page, w.pk) for w in (a, b, c)}
    wait_for_layout(dashboard, shown)

    # A reload shows the saved layout.
    page.reload()
    page.wait_for_selector(f"[data-testid=widget-{c.pk}] canvas")
    assert {w.pk: grid_box(page, w.pk) for w in (a, b, c)} == shown
    assert shown[a.pk] == (8, 0, 4, 2) and shown[c.pk][2:] == (6, 3)


def test_a_viewer_cannot_drag_or_resize(page: Any, live_daphne: LiveServer, make_user: Any) -> None:
    owner = make_user("shower")
    make_user("looker")
    builtin_dashboards_ensure(owner=producer_user())
    dashboard = services.dashboard_create(owner=owner, title="Look only", visibility="public")
    a = services.widget_create(
        dashboard=dashboard, kind="stat", title="A", channel="demo.sensors", value_paths=["pressure"]
    )
    sign_in(page, live_daphne, "looker")
    open_page(page, f"{live_daphne.url}/dashboards/{dashboard.pk}/")
    writes: list[str] = []
    page.on("request", lambda r: writes.append(f"{r.method} {r.url}") if r.method != "GET" else None)
    assert page.locator("[data-testid=edit-toggle]").count() == 0
    assert page.locator("#widget-form").count() == 0
    assert page.locator(f"[data-testid=widget-{a.pk}] .widget-tools button").count() == 0
    assert page.evaluate("document.getElementById('dash-grid').classList.contains('grid-stack-static')")
    assert page.locator(".ui-resizable-handle:visible").count() == 0
    drag(page, page.locator(f"[data-testid=widget-{a.pk}] header h2"), 600, 200)
    page.wait_for_timeout(800)
    assert grid_box(page, a.pk) == (0, 0, 4, 2)
    assert writes == []
    dashboard.refresh_from_db()
    assert dashboard.layout == [{"id": a.pk, "x": 0, "y": 0, "w": 4, "h": 2}]
    # On a phone the grid is one column: each widget takes the whole width.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("window.dashboardGrid.getColumn() === 1")
    page.wait_for_function(
        f"""document.querySelector('[data-testid=widget-{a.pk}]').getBoundingClientRect().width
            >= document.getElementById('dash-grid').getBoundingClientRect().width - 2"""
    )
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    # An empty dashboard tells a viewer there is nothing yet, without editing hints.
    empty = services.dashboard_create(owner=owner, title="Nothing", visibility="public")
    open_page(page, f"{live_daphne.url}/dashboards/{empty.pk}/")
    assert "Nothing here yet" in (page.text_content("[data-testid=empty-state]") or "")
    assert page.locator("[data-testid=empty-add]").count() == 0


def history_requests(page: Any) -> list[dict[str, int]]:
    return page.evaluate(
        """() => performance.getEntriesByType("resource")
             .filter(e => e.name.includes("/series/"))
             .map(e => Object.fromEntries([...new URL(e.name).searchParams].map(([k, v]) => [k, Number(v)])))"""
    )


def test_the_time_range_picker_reloads_history_at_the_right_resolution(
    page: Any, live_daphne: LiveServer, make_user: Any, mint_token: Any
) -> None:
    import json
    import urllib.request

    owner = make_user("ranger", staff=True)
    builtin_dashboards_ensure(owner=producer_user())
    dashboard = services.dashboard_create(owner=owner, title="Ranges")
    line = services.widget_create(dashboard=dashboard, kind="line", title="T", channel="demo.range", value_paths=["t"])
    now = int(time.time() * 1000)
    minute = 60_000
    # One point a minute for the last 3 hours, and one an hour back to 2 days ago.
    points = [("demo.range", "t", now - i * minute, float(i)) for i in range(1, 180)]
    points += [("demo.range", "t", now - h * 60 * minute, 1000.0 + h) for h in range(4, 48)]
    services.points_store(points)
    sign_in(page, live_daphne, "ranger")
    open_page(page, f"{live_daphne.url}/dashboards/{dashboard.pk}/")
    page.wait_for_selector("[data-testid=live-status].live")

    def shown() -> int:
        return int(page.evaluate(f"window.dashboardWidgets[{line.pk}].xs.length"))

    def pick(value: str) -> dict[str, int]:
        before = len(history_requests(page))
        page.select_option("[data-testid=range-select]", value)
        page.wait_for_function(
            f"performance.getEntriesByType('resource').filter(e => e.name.includes('/series/')).length > {before}"
        )
        page.wait_for_timeout(300)
        return history_requests(page)[-1]

    # The widget's own window (5 minutes) first: 4 points.
    page.wait_for_function(f"window.dashboardWidgets[{line.pk}].xs.length >= 4")
    first = history_requests(page)[-1]
    assert first["to"] - first["from"] == 300_000
    assert shown() == 4
    requests = {}
    for value, span, points_shown in (("1h", 3_600_000, 59), ("24h", 86_400_000, 0), ("5m", 300_000, 4)):
        request = pick(value)
        requests[value] = request
        assert request["to"] - request["from"] == span
        # Buckets sized for the chart: a few hundred points whatever the span.
        assert 60 <= span / request["step"] <= 1000
        assert f"range={value}" in page.url
        page.wait_for_function(f"window.dashboardWidgets[{line.pk}].xs.length > 0")
        if value == "24h":
            # Minute points fall into 5-minute buckets: fewer points than stored.
            assert requests["24h"]["step"] == 300_000
            assert 50 <= shown() <= 60
        else:
            assert shown() == points_shown
    assert requests["5m"]["step"] < requests["1h"]["step"] < requests["24h"]["step"]
    assert "live" in (page.text_content("[data-testid=range-note]") or "")

    # A bookmark keeps the range.
    page.goto(f"{live_daphne.url}/dashboards/{dashboard.pk}/?range=1h")
    page.wait_for_function(f"window.dashboardWidgets[{line.pk}].xs.length >= 59")
    assert page.input_value("[data-testid=range-select]") == "1h"
    assert history_requests(page)[-1]["to"] - history_requests(page)[-1]["from"] == 3_600_000

    # Live data keeps coming for a relative range.
    token = mint_token("ranger", "dashboards:write realtime:write")

    def ingest(value: float) -> None:
        request = urllib.request.Request(  # noqa: S310  (the local test server)
            f"{live_daphne.url}/api/dashboards/ingest/",
            data=json.dumps({"channel": "demo.range", "messages": [{"t": value}]}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert json.loads(response.read())["published"] == 1

    page.wait_for_selector("[data-testid=live-status].live")
    page.wait_for_timeout(300)
    ingest(7.5)
    page.wait_for_function("window.dashboardStats.received >= 1")

    # A custom range in the past: only its points, and no live updates.
    page.select_option("[data-testid=range-select]", "custom")
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime((now - 10 * 3600_000) / 1000))
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime((now - 5 * 3600_000 + 1000) / 1000))
    page.fill("[data-testid=range-from]", start)
    page.fill("[data-testid=range-to]", end)
    before = len(history_requests(page))
    page.click("[data-testid=range-apply]")
    page.wait_for_function(
        f"performance.getEntriesByType('resource').filter(e => e.name.includes('/series/')).length > {before}"
    )
    page.wait_for_function(f"window.dashboardWidgets[{line.pk}].xs.length === 6")  # hours 5..10 back
    custom = history_requests(page)[-1]
    assert abs(custom["from"] - (now - 10 * 3600_000)) < 2000
    assert "from=" in page.url and "to=" in page.url
    page.wait_for_function("document.querySelector('[data-testid=live-status]').textContent.includes('past range')")
    received = page.evaluate("window.dashboardStats.received")
    ingest(8.5)
    page.wait_for_timeout(1000)
    assert page.evaluate("window.dashboardStats.received") == received
    assert shown() == 6
    page.screenshot(path=str(ARTIFACTS / "dashboard-time-range.png"), full_page=True)
    # ... and the same after a reload from the URL.
    page.reload()
    page.wait_for_function(f"window.dashboardWidgets[{line.pk}].xs.length === 6")
    assert page.input_value("[data-testid=range-select]") == "custom"
    assert "past range" in (page.text_content("[data-testid=live-status]") or "")


def test_staff_watch_the_operations_dashboard_move(page: Any, live_daphne: LiveServer, make_user: Any) -> None:
    make_user("opsadmin", staff=True)
    _, ops_dashboard = builtin_dashboards_ensure(owner=producer_user())
    sign_in(page, live_daphne, "opsadmin")
    open_page(page, f"{live_daphne.url}/dashboards/{ops_dashboard.pk}/")
    page.wait_for_selector("[data-testid=live-status].live")
    # Every web process publishes its figures each second: the charts and stats fill up.
    page.wait_for_function("window.dashboardStats.received >= 3", timeout=20_000)
    db_stat = ops_dashboard.widgets.get(title="Database round trip")
    assert "ms" in (page.text_content(f"[data-testid=widget-{db_stat.pk}] .stat-value") or "")
    connections = ops_dashboard.widgets.get(title="Connections and subscriptions")
    points = page.evaluate(f"window.dashboardWidgets[{connections.pk}].ys[0].filter(v => v !== null)")
    assert points and max(points) >= 1  # this page's own connection is counted
    # The per-process table is a table: one row per process, one column per frame type, no raw JSON.
    table = ops_dashboard.widgets.get(title="Per process: frames and errors")
    cells = f"[data-testid=widget-{table.pk}] tbody td"
    page.wait_for_function(f"document.querySelectorAll('{cells}').length > 0")
    headers = page.locator(f"[data-testid=widget-{table.pk}] th").all_text_contents()
    assert headers[:2] == ["time", "process"]
    assert any(h.startswith("frames_in ") for h in headers), headers
    page.wait_for_timeout(2500)  # more messages from the same process replace its row
    assert page.locator(f"[data-testid=widget-{table.pk}] tbody tr").count() == 1
    assert not any("{" in text for text in page.locator(cells).all_text_contents())
    jobs = ops_dashboard.widgets.get(title="Last job results")
    assert "{" not in (page.text_content(f"[data-testid=widget-{jobs.pk}] .widget-body") or "")
    # Redis's queue length, or the filesystem broker's (its waiting message files).
    celery = ops_dashboard.widgets.get(title="Celery queue")
    value = page.text_content(f"[data-testid=widget-{celery.pk}] .stat-value") or ""
    assert value[:1].isdigit(), value
    page.screenshot(path=str(ARTIFACTS / "dashboards-operations.png"), full_page=True)
