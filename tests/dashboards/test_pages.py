"""The dashboard page as the server renders it: empty states, the editor, what null figures mean."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from dashboards import services
from dashboards.validation import widget_problems

pytestmark = pytest.mark.django_db


def page_for(user: Any, path: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="dashboard-config" type="application/json">(.*?)</script>', html, re.S)
    assert match
    return dict(json.loads(match.group(1)))


def test_an_empty_dashboard_shows_its_editor_how_to_add_the_first_widget(alice: Any) -> None:
    dashboard = services.dashboard_create(owner=alice, title="New")
    html = page_for(alice, f"/dashboards/{dashboard.pk}/")
    assert "This dashboard has no widgets yet" in html
    assert 'data-testid="empty-add"' in html
    assert 'id="widget-form"' in html
    assert '<option value="gauge">Gauge</option>' in html


def test_an_empty_dashboard_tells_a_viewer_there_is_nothing_yet(alice: Any, bob: Any) -> None:
    dashboard = services.dashboard_create(owner=alice, title="New", visibility="public")
    html = page_for(bob, f"/dashboards/{dashboard.pk}/")
    assert "Nothing here yet" in html
    assert 'data-testid="empty-add"' not in html and 'id="widget-form"' not in html


def test_a_dashboard_with_widgets_hides_the_empty_state_and_places_them(alice: Any) -> None:
    dashboard = services.dashboard_create(owner=alice, title="Full")
    widget = services.widget_create(dashboard=dashboard, kind="stat", title="S", channel="demo.s", value_paths=["v"])
    html = page_for(alice, f"/dashboards/{dashboard.pk}/")
    assert re.search(r'data-testid="empty-state"\s+hidden', html)
    assert f'gs-id="{widget.pk}" gs-x="0" gs-y="0" gs-w="4" gs-h="2"' in html


def test_the_channel_field_suggests_only_channels_the_editor_may_read(alice: Any, bob: Any) -> None:
    other = services.dashboard_create(owner=bob, title="Bob's")
    services.widget_create(dashboard=other, kind="stat", title="S", channel="demo.sensors", value_paths=["v"])
    services.widget_create(dashboard=other, kind="stat", title="S", channel="sys.ops", value_paths=["v"])
    mine = services.dashboard_create(owner=alice, title="Mine")
    html = page_for(alice, f"/dashboards/{mine.pk}/")
    assert '<option value="demo.sensors">' in html
    assert "sys.ops" not in html


def test_the_operations_page_says_why_the_celery_queue_has_no_number(admin_user: Any, settings: Any) -> None:
    from dashboards.demo import builtin_dashboards_ensure, producer_user

    demo, ops = builtin_dashboards_ensure(owner=producer_user())
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "filesystem://"
    notes = page_config(page_for(admin_user, f"/dashboards/{ops.pk}/"))["notes"]
    assert notes == {"sys.ops": {"celery_queue": "n/a (filesystem broker)", "redis.ok": "n/a (embedded mode)"}}
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    notes = page_config(page_for(admin_user, f"/dashboards/{ops.pk}/"))["notes"]
    assert notes == {"sys.ops": {"celery_queue": "n/a (Redis unreachable)"}}
    assert page_config(page_for(admin_user, f"/dashboards/{demo.pk}/"))["notes"] == {}


def test_the_built_in_per_process_table_is_keyed_by_process() -> None:
    from dashboards.demo import builtin_dashboards_ensure, producer_user

    _, ops = builtin_dashboards_ensure(owner=producer_user())
    table = ops.widgets.get(title="Per process: frames and errors")
    assert table.options["key"] == "process"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"key": "a..b"}, "key is a value path"),
        ({"key": 3}, "key is a value path"),
        ({"decimals": 11}, "decimals"),
        ({"decimals": 1.5}, "decimals"),
    ],
)
def test_table_key_and_decimals_options_are_checked(options: dict[str, Any], says: str) -> None:
    problems = widget_problems(kind="table", channel="demo.s", value_paths=["v"], options=options)
    assert says in problems["options"]


def test_good_table_options_pass() -> None:
    assert widget_problems(kind="table", channel="demo.s", value_paths=["v"], options={"key": "process"}) == {}
