"""Real-time operations shared by the WebSocket consumer and the REST API.

Each one authorizes through `webconnect.authorization` (the single entry point)
and raises `ProtocolError` with a client-facing code when refused.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from webconnect.authorization import aauthorize, acheck_rate
from webconnect.identity import Principal, Resource
from webconnect.realtime import metrics, protocol
from webconnect.realtime.history import Position
from webconnect.realtime.hub import get_hub
from webconnect.realtime.selectors import NamespaceConfig, anamespace_get


def public_identity(principal: Principal) -> dict[str, Any]:
    """What other clients learn about a sender: its id and display name, nothing else."""
    user = principal.user
    if not principal.is_authenticated:
        return {"user_id": None, "name": "anonymous"}
    name = (user.get_full_name() or user.get_username()) if hasattr(user, "get_full_name") else str(user)
    return {"user_id": user.pk, "name": name}


def channel_resource(channel: str, namespace: NamespaceConfig) -> Resource:
    return Resource("Channel", channel, namespace.attrs())


async def channel_namespace(channel: str, *, id: str | None = None) -> NamespaceConfig:
    namespace = await anamespace_get(protocol.namespace_of(channel))
    if namespace is None:
        raise protocol.ProtocolError("not_found", f"no namespace {protocol.namespace_of(channel)!r}", id=id)
    return namespace


async def check_channel_action(
    principal: Principal, action: str, channel: str, *, id: str | None = None
) -> NamespaceConfig:
    """Authorize `action` on `channel` or raise forbidden/unauthorized/not_found."""
    namespace = await channel_namespace(channel, id=id)
    decision = await aauthorize(principal, action, channel_resource(channel, namespace))
    if not decision:
        code = "unauthorized" if not principal.is_authenticated else "forbidden"
        raise protocol.ProtocolError(code, f"{action} on {channel} is not allowed: {decision.reason}", id=id)
    return namespace


def check_payload_schema(namespace: NamespaceConfig, payload: Any, *, id: str | None = None) -> None:
    if namespace.payload_schema is None:
        return
    error = next(iter(Draft202012Validator(namespace.payload_schema).iter_errors(payload)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        raise protocol.ProtocolError(
            "bad_request", f"payload does not match the schema at {where}: {error.message}", id=id
        )


async def channel_publish(
    *,
    principal: Principal,
    channel: str,
    payload: Any,
    encoding: str = "json",
    source: str = "websocket",
    id: str | None = None,
    namespace: NamespaceConfig | None = None,
) -> Position:
    """Authorize, rate-limit, validate and publish one message; returns its offset and epoch."""
    protocol.check_channel(channel, id=id)
    if namespace is None:
        namespace = await check_channel_action(principal, "publish", channel, id=id)
    # "Server only" namespaces refuse WebSocket clients; REST producers and staff are the server side
    # (still subject to authorization above).
    if (
        source == "websocket"
        and not namespace.client_publish
        and not (principal.is_authenticated and principal.user.is_staff)
    ):
        raise protocol.ProtocolError("forbidden", f"only the server publishes in {namespace.name}", id=id)
    # Frames parsed by protocol.py are checked already; payloads from other callers (dashboard
    # ingest parses with DRF) are not, and one lone surrogate would break every reader of the channel.
    protocol.check_text(payload, id=id)
    rate = await acheck_rate(principal, "publish", channel_resource(channel, namespace))
    if not rate.allowed:
        raise protocol.ProtocolError(
            "rate_limited", f"publish rate limit reached ({rate.limit})", id=id, retry_after=rate.retry_after
        )
    if encoding == "json":
        check_payload_schema(namespace, payload, id=id)
    position = await get_hub().publish(channel, namespace, payload, public_identity(principal), encoding)
    metrics.PUBLISHES.labels(source).inc()
    return position


SERVER_IDENTITY = {"user_id": None, "name": "server"}


async def channel_publish_from_server(*, channel: str, payload: Any) -> Position:
    """Publish from platform code (a task, another app): no principal, no rate limit, `from` = server.

    Raises ProtocolError for an invalid channel, an unknown namespace or a payload that breaks its schema.
    """
    protocol.check_channel(channel)
    namespace = await channel_namespace(channel)
    protocol.check_text(payload)
    check_payload_schema(namespace, payload)
    position = await get_hub().publish(channel, namespace, payload, SERVER_IDENTITY)
    metrics.PUBLISHES.labels("server").inc()
    return position


async def channel_history(*, principal: Principal, channel: str, limit: int, id: str | None = None) -> dict[str, Any]:
    namespace = await check_channel_action(principal, "history", channel, id=id)
    entries, position = await get_hub().latest(channel, namespace, limit)
    return {
        "messages": [protocol.loads(text) for _, text in entries],
        "offset": position.offset,
        "epoch": position.epoch,
    }


async def channel_presence(*, principal: Principal, channel: str, id: str | None = None) -> dict[str, Any]:
    namespace = await check_channel_action(principal, "presence", channel, id=id)
    if not namespace.presence:
        raise protocol.ProtocolError("not_found", f"presence is off in namespace {namespace.name}", id=id)
    hub = get_hub()
    await hub.start()
    return {"clients": await hub.presence.members(channel)}
