"""A storage outage on a socket's path means "unavailable, retry" (4503): never a denial, an HTTP 500 or a 1011.

The live fault tests (test_postgres_outage.py, test_redis_outage.py) find these
paths by timing; here each one is forced, so every tier checks them every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import OperationalError

from collab import services
from tests.collab.yclient import connect
from webconnect import authorization, identity
from webconnect.asgi import application
from webconnect.identity import Decision, Principal, Resource, principal_for_user
from webconnect.kernel import codes
from webconnect.kernel.sessions import SessionConsumer

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _database_down(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError('connection to server at "127.0.0.1" failed: Connection refused')


async def _database_down_async(*args: Any, **kwargs: Any) -> Any:
    _database_down()


@pytest.fixture(autouse=True)
def _no_persistent_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumers here run their database calls in asgiref's worker threads, inside this process:
    connections that outlive each call there would keep the test database from being dropped."""
    from django.db import connections

    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)


@pytest.fixture
def decisions_fail() -> Iterator[None]:
    """Every policy decision meets a database that is down."""
    previous = authorization._decide
    authorization.set_decider(_database_down)
    yield
    authorization.set_decider(previous)


@pytest.fixture
def document(alice: Any, mint_token: Callable[..., str]) -> tuple[int, str]:
    return services.document_create(owner=alice, title="Outage").pk, mint_token("alice", "docs:read docs:write")


def _headers(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]


async def _close_code(communicator: WebsocketCommunicator) -> int | None:
    connected, _ = await communicator.connect(timeout=5)
    assert connected, "the upgrade was refused"
    output = await communicator.receive_output(5)
    assert output["type"] == "websocket.close", output
    code: int | None = output.get("code")
    return code


async def test_sockets_authorize_raises_on_an_outage_where_http_denies(alice: Any, decisions_fail: None) -> None:
    principal: Principal = principal_for_user(alice)
    resource = Resource("Document", "1")
    decision: Decision = await sync_to_async(authorization.authorize)(principal, "read", resource)
    assert not decision and decision.errors  # HTTP views: fail closed, as before
    with pytest.raises(OperationalError):
        await authorization.aauthorize(principal, "read", resource)


async def test_a_document_opened_while_decisions_fail_closes_with_4503_not_4403(
    document: tuple[int, str], decisions_fail: None
) -> None:
    document_id, token = document
    code = await _close_code(WebsocketCommunicator(application, f"/ws/docs/{document_id}", headers=_headers(token)))
    assert code == codes.UNAVAILABLE, f"closed with {code}: a client would give up on a 4403"


async def test_a_handshake_that_cannot_check_the_token_closes_with_4503_not_http_500(
    document: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document_id, token = document
    # The handshake's batched token query (webconnect.identity) meets the outage.
    monkeypatch.setattr(identity, "_stored_access_tokens", _database_down)
    for path in (f"/ws/docs/{document_id}", "/ws/"):
        assert await _close_code(WebsocketCommunicator(application, path, headers=_headers(token))) == (
            codes.UNAVAILABLE
        )


async def test_a_frame_that_meets_the_outage_closes_with_4503_not_1011(
    document: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document_id, token = document
    client = await connect(document_id, token)
    assert client.synced
    import collab.sync

    monkeypatch.setattr(collab.sync, "acheck_rate", _database_down_async)
    await client.edit("lost?")
    await client.pump(wait=3, until=lambda: client.closed_code is not None)
    assert client.closed_code == codes.UNAVAILABLE


def test_sockets_open_no_channel_layer_channel() -> None:
    """The kernel's bus carries everything between processes; a per-socket channel-layer
    receive loop would only end every socket when Redis restarts."""
    assert get_channel_layer(SessionConsumer.channel_layer_alias) is None
