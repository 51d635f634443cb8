"""Sharing dashboards: /api/dashboards/{id}/shares/, the list and the page, and what a share follows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from dashboards import services
from dashboards.models import Dashboard
from policies.models import ShareGrant
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def board(alice: Any) -> Dashboard:
    return services.dashboard_create(owner=alice, title="Plant floor")


def url(board: Dashboard) -> str:
    return f"/api/dashboards/{board.pk}/shares/"


def listed(user: Any) -> list[str]:
    return [d["title"] for d in client_for(user).get("/api/dashboards/").json()]


def test_a_private_dashboard_shared_with_a_group_is_listed_and_viewable_by_its_members(
    alice: Any, bob: Any, make_user: Callable[..., Any], board: Dashboard
) -> None:
    carol = make_user("carol")
    ops = Group.objects.create(name="ops")
    bob.groups.add(ops)
    assert client_for(bob).get(f"/api/dashboards/{board.pk}/").status_code == 404
    response = client_for(alice).post(url(board), {"group": "ops", "role": "viewer"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["type"] == "group" and response.json()["role"] == "viewer"
    assert "Plant floor" in listed(bob) and "Plant floor" not in listed(carol)
    detail = client_for(bob).get(f"/api/dashboards/{board.pk}/")
    assert detail.status_code == 200 and detail.json()["can_edit"] is False
    assert client_for(bob).get(f"/dashboards/{board.pk}/").status_code == 200
    patch = client_for(bob).patch(f"/api/dashboards/{board.pk}/", {"title": "x"}, content_type="application/json")
    assert patch.status_code == 403
    assert client_for(carol).get(f"/api/dashboards/{board.pk}/").status_code == 404

    assert client_for(alice).delete(f"{url(board)}?group=ops").status_code == 204
    assert "Plant floor" not in listed(bob)
    assert client_for(bob).get(f"/api/dashboards/{board.pk}/").status_code == 404


def test_an_editor_share_lets_a_user_change_the_dashboard(alice: Any, bob: Any, board: Dashboard) -> None:
    response = client_for(alice).post(url(board), {"user": "bob", "role": "editor"}, content_type="application/json")
    assert response.status_code == 201
    assert client_for(bob).get(f"/api/dashboards/{board.pk}/").json()["can_edit"] is True
    patch = client_for(bob).patch(
        f"/api/dashboards/{board.pk}/", {"title": "Renamed by bob"}, content_type="application/json"
    )
    assert patch.status_code == 200 and patch.json()["title"] == "Renamed by bob"
    # Editing is not sharing: bob cannot see or change who has access.
    assert client_for(bob).get(url(board)).status_code == 403
    share_id = client_for(alice).get(url(board)).json()[0]["id"]
    assert client_for(alice).delete(f"{url(board)}{share_id}/").status_code == 204
    assert client_for(bob).get(f"/api/dashboards/{board.pk}/").status_code == 404
    events = AuditEvent.objects.filter(target=f"Dashboard::{board.pk}", action__startswith="share.")
    actions = list(events.order_by("id").values_list("action", flat=True))
    assert actions == ["share.granted", "share.revoked"]


def test_the_dashboard_page_offers_the_share_dialog_to_those_who_may_share(
    alice: Any, bob: Any, board: Dashboard
) -> None:
    client_for(alice).post(url(board), {"user": "bob", "role": "editor"}, content_type="application/json")
    owner_page = client_for(alice).get(f"/dashboards/{board.pk}/").content.decode()
    assert 'data-testid="share-open"' in owner_page and 'id="share-dialog"' in owner_page
    assert f'data-shares-url="/api/dashboards/{board.pk}/shares/"' in owner_page
    editor_page = client_for(bob).get(f"/dashboards/{board.pk}/").content.decode()
    assert 'data-testid="share-open"' not in editor_page and 'id="share-dialog"' not in editor_page


def test_tokens_need_dashboards_write(alice: Any, board: Dashboard, mint_token: Callable[..., str]) -> None:
    reader = mint_token("alice", "dashboards:read docs:write")
    refused = Client().get(url(board), HTTP_AUTHORIZATION=f"Bearer {reader}")
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    writer = mint_token("alice", "dashboards:read dashboards:write")
    assert Client().get(url(board), HTTP_AUTHORIZATION=f"Bearer {writer}").json() == []


def test_the_owner_and_unknown_names_are_refused(alice: Any, board: Dashboard) -> None:
    client = client_for(alice)
    owner = client.post(url(board), {"user": "alice", "role": "viewer"}, content_type="application/json")
    assert owner.status_code == 400 and "owns this dashboard" in str(owner.json())
    assert (
        client.post(url(board), {"group": "nope", "role": "viewer"}, content_type="application/json").status_code == 400
    )


def test_deleting_a_dashboard_deletes_its_shares(alice: Any, bob: Any, board: Dashboard) -> None:
    client_for(alice).post(url(board), {"user": "bob", "role": "viewer"}, content_type="application/json")
    assert ShareGrant.objects.filter(resource_type="Dashboard").count() == 1
    assert client_for(alice).delete(f"/api/dashboards/{board.pk}/").status_code == 204
    assert not ShareGrant.objects.exists()
