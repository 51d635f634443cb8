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


def test_a_user_builds_a_dashboard_in_the_page_and_watches_cli_data_live(
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

    page.click("[data-testid=edit-toggle]")
    for kind, title, paths in (("line", "Flow", "flow,level"), ("stat", "Level", "level"), ("gauge", "Valve", "valve")):
        page.select_option("#widget-form [name=kind]", kind)
        page.fill("#widget-form [name=title]", title)
        page.fill("#widget-form [name=channel]", "chat.plant")
        page.fill("#widget-form [name=value_paths]", paths)
        with page.expect_navigation():
            page.click("#widget-form button[type=submit]")
        page.click("[data-testid=edit-toggle]")
    # A bad widget is refused with the reason in the form.
    page.select_option("#widget-form [name=kind]", "gauge")
    page.fill("#widget-form [name=title]", "Broken")
    page.fill("#widget-form [name=channel]", "no-namespace")
    page.fill("#widget-form [name=value_paths]", "x")
    page.click("#widget-form button[type=submit]")
    page.wait_for_function(
        "document.querySelector('[data-testid=widget-form-error]').textContent.includes('invalid channel')"
    )
    widgets = {w.title: w for w in dashboard.widgets.all()}
    assert set(widgets) == {"Flow", "Level", "Valve"}

    # Move the gauge first and make it wider; the layout is saved.
    valve = page.locator(f"[data-testid=widget-{widgets['Valve'].pk}]")
    valve.get_by_role("button", name="move left").click()
    valve.get_by_role("button", name="move left").click()
    valve.get_by_role("button", name="wider").click()
    expected = [widgets["Valve"].pk, widgets["Flow"].pk, widgets["Level"].pk]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dashboard.refresh_from_db()
        if [item["id"] for item in dashboard.layout] == expected:
            break
        time.sleep(0.2)
    assert [item["id"] for item in dashboard.layout] == expected
    assert dashboard.layout[0]["w"] == 5

    open_page(page, page.url)
    page.wait_for_selector("[data-testid=live-status].live")
    page.wait_for_timeout(300)
    env = {**os.environ, "WEBCONNECT_TOKEN": token}
    for i in range(5):
        payload = f'{{"flow": {10 + i}, "level": {50 + i}, "valve": {i * 20}}}'
        subprocess.run(
            [
                sys.executable,
                "-m",
                "webconnect_client",
                "--url",
                f"{live_daphne.ws_url}/ws/",
                "publish",
                "chat.plant",
                payload,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=30,
        )
    page.wait_for_function(
        f"document.querySelector('[data-testid=widget-{widgets['Level'].pk}] .stat-value').textContent.startsWith('54')"
    )
    assert page.text_content(f"[data-testid=widget-{widgets['Valve'].pk}] .gauge-value") == "80.00"
    # Bad data: the widget says what is wrong, and keeps its last good value.
    subprocess.run(
        [sys.executable, "-m", "webconnect_client", "--url", f"{live_daphne.ws_url}/ws/", "publish", "chat.plant",
         '{"flow": 1, "level": "high", "valve": 10}'],
        env=env, check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    level_status = f"[data-testid=widget-{widgets['Level'].pk}] [data-testid=widget-status]"
    page.wait_for_function(f"document.querySelector('{level_status}').textContent.includes('is not a number')")
    assert "value at 'level' is not a number: \"high\"" in (page.text_content(level_status) or "")
    assert page.text_content(f"[data-testid=widget-{widgets['Level'].pk}] .stat-value", timeout=1000) == "54.00"
    page.screenshot(path=str(ARTIFACTS / "dashboards-built-by-user.png"), full_page=True)


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
    page.screenshot(path=str(ARTIFACTS / "dashboards-operations.png"), full_page=True)
