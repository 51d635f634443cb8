from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from dashboards import services
from dashboards.models import Dashboard, SeriesPoint, Widget

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_dashboard(owner: Any, **kwargs: Any) -> Dashboard:
    return services.dashboard_create(owner=owner, title="Plant", **kwargs)


def test_owner_creates_a_dashboard_and_adds_widgets(alice: Any) -> None:
    client = client_for(alice)
    response = client.post("/api/dashboards/", {"title": "Plant"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    dashboard_id = response.json()["id"]
    response = client.post(
        f"/api/dashboards/{dashboard_id}/widgets/",
        {"kind": "line", "title": "Temp", "channel": "demo.sensors", "value_paths": ["temp", "humidity"]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.json()
    widget = response.json()
    assert widget["status"] == "ok"
    assert widget["channel"] == "demo.sensors"
    detail = client.get(f"/api/dashboards/{dashboard_id}/").json()
    assert [w["id"] for w in detail["widgets"]] == [widget["id"]]
    assert detail["layout"] == [{"id": widget["id"], "x": 0, "y": 0, "w": 12, "h": 2}]
    assert (widget["x"], widget["y"], widget["w"], widget["h"]) == (0, 0, 12, 2)


def test_layout_is_saved_and_foreign_widgets_are_dropped(alice: Any) -> None:
    dashboard = make_dashboard(alice)
    first = services.widget_create(dashboard=dashboard, kind="stat", title="A", channel="demo.x", value_paths=["v"])
    second = services.widget_create(dashboard=dashboard, kind="log", title="B", channel="demo.x", value_paths=[])
    layout = [
        {"id": first.pk, "x": 6, "y": 1, "w": 4, "h": 1},
        {"id": 999999, "x": 0, "y": 0, "w": 6, "h": 2},
        {"id": second.pk, "x": 0, "y": 0, "w": 6, "h": 3},
    ]
    response = client_for(alice).patch(
        f"/api/dashboards/{dashboard.pk}/", {"layout": layout}, content_type="application/json"
    )
    assert response.status_code == 200, response.json()
    # Reading order (top to bottom, left to right); the other dashboard's widget is gone.
    assert response.json()["layout"] == [
        {"id": second.pk, "x": 0, "y": 0, "w": 6, "h": 3},
        {"id": first.pk, "x": 6, "y": 1, "w": 4, "h": 1},
    ]
    assert [(w["title"], w["x"], w["y"]) for w in response.json()["widgets"]] == [("B", 0, 0), ("A", 6, 1)]
    for bad, says in (
        ({"id": first.pk, "w": 40}, "1..12"),
        ({"id": first.pk, "x": 10, "y": 0, "w": 4, "h": 1}, "x + w at most 12"),
        ({"id": first.pk, "x": 0, "w": 4, "h": 1}, "both x and y"),
        ({"id": first.pk, "x": 0, "y": -1, "w": 4, "h": 1}, "y must be"),
    ):
        answer = client_for(alice).patch(
            f"/api/dashboards/{dashboard.pk}/", {"layout": [bad]}, content_type="application/json"
        )
        assert answer.status_code == 400
        assert answer.json()["code"] == "invalid"
        assert says in str(answer.json()["errors"]["layout"])


def test_new_widgets_go_to_the_first_free_spot(alice: Any) -> None:
    dashboard = make_dashboard(alice)
    stats = [
        services.widget_create(dashboard=dashboard, kind="stat", title=f"S{i}", channel="demo.x", value_paths=["v"])
        for i in range(4)
    ]
    line = services.widget_create(dashboard=dashboard, kind="line", title="L", channel="demo.x", value_paths=["v"])
    boxes = {box["id"]: (box["x"], box["y"], box["w"], box["h"]) for box in dashboard.layout}
    # Three 4-wide stats fill the first row; the fourth starts the next one; the line goes below.
    assert [boxes[s.pk] for s in stats] == [(0, 0, 4, 2), (4, 0, 4, 2), (8, 0, 4, 2), (0, 2, 4, 2)]
    assert boxes[line.pk] == (0, 4, 12, 2)
    # A gap left by a removed widget is reused.
    services.widget_delete(widget=stats[1])
    dashboard.refresh_from_db()
    gauge = services.widget_create(dashboard=dashboard, kind="gauge", title="G", channel="demo.x", value_paths=["v"])
    assert {box["id"]: box for box in dashboard.layout}[gauge.pk]["x"] == 4


def test_a_layout_saved_without_positions_is_placed_as_before(alice: Any) -> None:
    """Layouts stored before positions existed ({id, w, h} in display order) still show, flowed in order."""
    dashboard = make_dashboard(alice)
    a = services.widget_create(dashboard=dashboard, kind="line", title="A", channel="demo.x", value_paths=["v"])
    b = services.widget_create(dashboard=dashboard, kind="stat", title="B", channel="demo.x", value_paths=["v"])
    c = services.widget_create(dashboard=dashboard, kind="stat", title="C", channel="demo.x", value_paths=["v"])
    Dashboard.objects.filter(pk=dashboard.pk).update(
        layout=[{"id": c.pk, "w": 6, "h": 2}, {"id": a.pk, "w": 12, "h": 2}, {"id": b.pk, "w": 6, "h": 1}]
    )
    widgets = client_for(alice).get(f"/api/dashboards/{dashboard.pk}/").json()["widgets"]
    assert [(w["title"], w["x"], w["y"], w["w"], w["h"]) for w in widgets] == [
        ("C", 0, 0, 6, 2),
        ("B", 6, 0, 6, 1),
        ("A", 0, 2, 12, 2),
    ]
    page = client_for(alice).get(f"/dashboards/{dashboard.pk}/").content.decode()
    assert f'gs-id="{a.pk}" gs-x="0" gs-y="2" gs-w="12" gs-h="2"' in page


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"kind": "line", "title": "T", "channel": "nonamespace", "value_paths": ["t"]}, "channel", "invalid channel"),
        ({"kind": "line", "title": "T", "channel": "demo.s", "value_paths": ["a..b"]}, "value_paths", "dotted"),
        ({"kind": "gauge", "title": "T", "channel": "demo.s", "value_paths": []}, "value_paths", "at least one"),
        (
            {"kind": "gauge", "title": "T", "channel": "demo.s", "value_paths": ["t"], "options": {"window": 1}},
            "options",
            "window",
        ),
    ],
)
def test_bad_widgets_get_clear_errors(alice: Any, body: dict[str, Any], field: str, says: str) -> None:
    dashboard = make_dashboard(alice)
    response = client_for(alice).post(f"/api/dashboards/{dashboard.pk}/widgets/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert says in str(response.json()["errors"][field])


def test_outsider_cannot_see_a_private_dashboard(alice: Any, bob: Any) -> None:
    dashboard = make_dashboard(alice)
    assert client_for(bob).get(f"/api/dashboards/{dashboard.pk}/").status_code == 404
    assert client_for(bob).get("/api/dashboards/").json() == []
    assert client_for(bob).get(f"/dashboards/{dashboard.pk}/").status_code == 404


def test_public_dashboard_is_visible_but_not_editable(alice: Any, bob: Any) -> None:
    dashboard = make_dashboard(alice, visibility="public")
    assert client_for(bob).get(f"/api/dashboards/{dashboard.pk}/").json()["can_edit"] is False
    response = client_for(bob).patch(
        f"/api/dashboards/{dashboard.pk}/", {"title": "x"}, content_type="application/json"
    )
    assert response.status_code == 403


def test_widget_on_an_unreadable_channel_says_no_access_and_leaks_nothing(alice: Any, bob: Any) -> None:
    dashboard = make_dashboard(alice, visibility="public")
    widget = services.widget_create(
        dashboard=dashboard, kind="line", title="Secret", channel="sys.ops", value_paths=["connections"]
    )
    services.points_store([("sys.ops", "connections", 1000, 7.0)])
    data = client_for(bob).get(f"/api/dashboards/{dashboard.pk}/").json()["widgets"][0]
    assert data["status"] == "no_access"
    assert data["channel"] is None and data["value_paths"] == []
    series = client_for(bob).get(f"/api/dashboards/widgets/{widget.pk}/series/?from=0&to=2000&step=1000")
    assert series.status_code == 403
    page = client_for(bob).get(f"/dashboards/{dashboard.pk}/").content.decode()
    assert "no access" in page.lower()
    assert "sys.ops" not in page and "connections" not in page


def test_widget_on_a_nonexistent_channel_says_so(alice: Any) -> None:
    dashboard = make_dashboard(alice)
    services.widget_create(dashboard=dashboard, kind="stat", title="X", channel="nosuch.thing", value_paths=["v"])
    data = client_for(alice).get(f"/api/dashboards/{dashboard.pk}/").json()["widgets"][0]
    assert data["status"] == "no_channel"
    assert "does not exist" in data["message"]


def test_series_query_returns_buckets_and_refuses_bad_ranges(alice: Any) -> None:
    dashboard = make_dashboard(alice)
    widget = services.widget_create(dashboard=dashboard, kind="line", title="T", channel="demo.s", value_paths=["temp"])
    services.points_store(("demo.s", "temp", 1000 * i, float(i)) for i in range(60))
    client = client_for(alice)
    ok = client.get(f"/api/dashboards/widgets/{widget.pk}/series/?from=0&to=59000&step=30000").json()
    assert [row["avg"] for row in ok["series"]["temp"]] == [14.5, 44.5]
    reversed_ = client.get(f"/api/dashboards/widgets/{widget.pk}/series/?from=5000&to=0&step=1000")
    assert reversed_.status_code == 400
    assert reversed_.json() == {"detail": "'from' is after 'to'", "code": "bad_request"}
    huge = client.get(f"/api/dashboards/widgets/{widget.pk}/series/?from=0&to=100000000000&step=1")
    assert huge.status_code == 400
    assert "larger step" in str(huge.json())
    junk = client.get(f"/api/dashboards/widgets/{widget.pk}/series/?from=yesterday")
    assert junk.status_code == 400


def test_a_read_token_cannot_write(alice: Any, mint_token: Any) -> None:
    token = mint_token("alice", "dashboards:read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/dashboards/").status_code == 200
    response = client.post("/api/dashboards/", {"title": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_widget_edit_and_delete(alice: Any) -> None:
    dashboard = make_dashboard(alice)
    widget = services.widget_create(dashboard=dashboard, kind="bar", title="T", channel="demo.s", value_paths=["a"])
    client = client_for(alice)
    response = client.patch(
        f"/api/dashboards/widgets/{widget.pk}/", {"title": "Renamed"}, content_type="application/json"
    )
    assert response.json()["title"] == "Renamed"
    assert client.delete(f"/api/dashboards/widgets/{widget.pk}/").status_code == 204
    assert not Widget.objects.exists()
    assert Dashboard.objects.get().layout == []
    assert client.delete(f"/api/dashboards/widgets/{widget.pk}/").status_code == 404


def test_openapi_schema_lists_the_dashboard_endpoints(alice: Any) -> None:
    schema = client_for(alice).get("/api/schema/").content.decode()
    for path in ("/api/dashboards/", "/api/dashboards/widgets/{widget_id}/series/", "/api/dashboards/ingest/"):
        assert path in schema


def test_ingest_publishes_each_message_and_reports_bad_values(admin_user: Any, alice: Any) -> None:
    dashboard = make_dashboard(alice)
    services.widget_create(dashboard=dashboard, kind="line", title="T", channel="demo.s", value_paths=["temp"])
    client = client_for(admin_user)
    response = client.post(
        "/api/dashboards/ingest/",
        {"channel": "demo.s", "messages": [{"temp": 1}, {"temp": "warm"}, {"other": 2}]},
        content_type="application/json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["published"] == 3
    assert [(p["index"], p["code"]) for p in body["problems"]] == [(1, "not_numeric"), (2, "no_match")]
    assert SeriesPoint.objects.count() == 0  # points are written by the recorder, not here


def test_ingest_is_authorized_per_channel(alice: Any) -> None:
    response = client_for(alice).post(
        "/api/dashboards/ingest/", {"channel": "sys.ops", "messages": [{"x": 1}]}, content_type="application/json"
    )
    assert response.status_code == 403
    missing = client_for(alice).post(
        "/api/dashboards/ingest/", {"channel": "nope.x", "messages": [{"x": 1}]}, content_type="application/json"
    )
    assert missing.status_code == 404


def test_ingest_with_a_token_needs_realtime_write_too(admin_user: Any, mint_token: Any) -> None:
    token = mint_token(admin_user.username, "dashboards:write")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.post(
        "/api/dashboards/ingest/", {"channel": "demo.s", "messages": [{"x": 1}]}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["required_scopes"] == ["dashboards:write", "realtime:write"]


def test_ingest_refuses_oversized_batches(admin_user: Any, settings: Any) -> None:
    settings.DASHBOARDS_INGEST_MAX_BATCH = 2
    response = client_for(admin_user).post(
        "/api/dashboards/ingest/", {"channel": "demo.s", "messages": [1, 2, 3]}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "at most 2" in str(response.json())


def test_the_operations_dashboard_is_for_staff(admin_user: Any, alice: Any) -> None:
    from dashboards.demo import builtin_dashboards_ensure, producer_user

    _, ops_dashboard = builtin_dashboards_ensure(owner=producer_user())
    staff_view = client_for(admin_user).get(f"/api/dashboards/{ops_dashboard.pk}/").json()
    assert {w["status"] for w in staff_view["widgets"]} == {"ok"}
    assert client_for(alice).get(f"/api/dashboards/{ops_dashboard.pk}/").status_code == 404
    assert client_for(admin_user).get(f"/dashboards/{ops_dashboard.pk}/").status_code == 200


def test_metrics_include_the_dashboard_counters(admin_user: Any) -> None:
    body = client_for(admin_user).get("/metrics").content.decode()
    assert "webconnect_dashboards_points_recorded_total" in body
    assert "webconnect_realtime_connections" in body


def test_the_admin_refuses_a_bad_widget_with_a_form_error(admin_user: Any, alice: Any) -> None:
    dashboard = make_dashboard(alice)
    response = client_for(admin_user).post(
        "/admin/dashboards/widget/add/",
        {
            "dashboard": dashboard.pk,
            "kind": "gauge",
            "title": "Broken",
            "channel": "demo.s",
            "value_paths": '["a", "b"]',
            "options": "{}",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "exactly one value path" in response.content.decode()
    assert not Widget.objects.exists()
    assert client_for(admin_user).get(f"/admin/dashboards/dashboard/{dashboard.pk}/change/").status_code == 200


def test_personal_channels_are_readable_by_their_owner_only(alice: Any, bob: Any) -> None:
    dashboard = make_dashboard(alice, visibility="public")
    services.widget_create(
        dashboard=dashboard, kind="stat", title="Mine", channel=f"user.{alice.pk}", value_paths=["v"]
    )
    as_alice = client_for(alice).get(f"/api/dashboards/{dashboard.pk}/").json()["widgets"][0]
    as_bob = client_for(bob).get(f"/api/dashboards/{dashboard.pk}/").json()["widgets"][0]
    assert as_alice["status"] == "ok"
    assert as_bob["status"] == "no_access" and as_bob["channel"] is None
