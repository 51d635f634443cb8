"""A share change made through the REST endpoint reaches open document sockets in the same process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.test import Client

from collab import protocol, services
from tests.collab.yclient import connect

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SCOPES = "docs:read docs:write"


@pytest.fixture
def setup(alice: Any, bob: Any, mint_token: Callable[..., str]) -> dict[str, Any]:
    from policies import watch

    watch.reset()  # a rolled-back test reuses policy version numbers
    document = services.document_create(owner=alice, title="Plan")
    client = Client()
    client.force_login(alice)
    return {"doc": document.pk, "alice": client, "bob": mint_token("bob", SCOPES), "bob_user": bob}


async def call(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    send = sync_to_async(getattr(client, method))
    return await (send(path) if body is None else send(path, body, content_type="application/json"))


async def test_revoking_a_viewer_closes_the_live_socket_with_4403(setup: dict[str, Any]) -> None:
    url = f"/api/documents/{setup['doc']}/shares/"
    created = await call(setup["alice"], "post", url, {"user": "bob", "role": "viewer"})
    assert created.status_code == 201
    bob = await connect(setup["doc"], setup["bob"])
    assert bob.synced and bob.closed_code is None
    revoked = await call(setup["alice"], "delete", f"{url}{created.json()['id']}/")
    assert revoked.status_code == 204
    await bob.pump(wait=3, until=lambda: bob.closed_code is not None)
    assert bob.denied and bob.closed_code == protocol.CLOSE_FORBIDDEN
    again = await connect(setup["doc"], setup["bob"])
    assert again.denied


async def test_turning_an_editor_into_a_viewer_makes_the_socket_reconnect(setup: dict[str, Any]) -> None:
    url = f"/api/documents/{setup['doc']}/shares/"
    assert (await call(setup["alice"], "post", url, {"user": "bob", "role": "editor"})).status_code == 201
    bob = await connect(setup["doc"], setup["bob"])
    assert bob.synced
    assert (await call(setup["alice"], "post", url, {"user": "bob", "role": "viewer"})).status_code == 201
    await bob.pump(wait=3, until=lambda: bob.closed_code is not None)
    assert bob.closed_code == protocol.CLOSE_PERMISSIONS_CHANGED


async def test_revoking_a_group_share_closes_its_members_sockets(setup: dict[str, Any]) -> None:
    team = await Group.objects.acreate(name="team")
    await sync_to_async(setup["bob_user"].groups.add)(team)
    url = f"/api/documents/{setup['doc']}/shares/"
    assert (await call(setup["alice"], "post", url, {"group": "team", "role": "viewer"})).status_code == 201
    bob = await connect(setup["doc"], setup["bob"])
    assert bob.synced and bob.closed_code is None
    assert (await call(setup["alice"], "delete", f"{url}?group=team")).status_code == 204
    await bob.pump(wait=3, until=lambda: bob.closed_code is not None)
    assert bob.closed_code == protocol.CLOSE_FORBIDDEN
