"""The ordered middleware pipeline every client frame passes before dispatch.

A transformer is `async def t(ctx: FrameContext, frame: Frame) -> Frame | None`: it
may inspect, replace (enrich, rewrite) or drop (return None) the frame, or refuse
it by raising `ProtocolError`. The list comes from settings.REALTIME_PIPELINE
(dotted paths) followed by entry points in the group `webconnect.realtime.transformers`;
request methods from the built-ins, settings.REALTIME_REQUEST_METHODS
("name=dotted.path") and the entry-point group `webconnect.realtime.methods`.
Both are loaded once, at first use in the process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from webconnect.identity import Principal
from webconnect.realtime import protocol
from webconnect.realtime.selectors import anamespace_get
from webconnect.realtime.services import check_payload_schema

logger = logging.getLogger("webconnect.realtime.tap")


@dataclass(frozen=True)
class FrameContext:
    principal: Principal
    connection_id: str


Transformer = Callable[[FrameContext, protocol.Frame], Awaitable[protocol.Frame | None]]
RequestMethod = Callable[[FrameContext, Any], Awaitable[Any]]


async def validate_payload(ctx: FrameContext, frame: protocol.Frame) -> protocol.Frame | None:
    """Refuse a publish whose payload breaks the namespace's JSON Schema before it uses a rate-limit unit.

    The publish service checks again, so the REST path is covered as well.
    """
    if frame.type == "publish" and frame.encoding == "json" and frame.channel:
        namespace = await anamespace_get(protocol.namespace_of(frame.channel))
        if namespace is not None:
            check_payload_schema(namespace, frame.payload, id=frame.id)
    return frame


async def audit_tap(ctx: FrameContext, frame: protocol.Frame) -> protocol.Frame | None:
    """A tap: one debug log line per frame (type, channel, user), never the payload."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "frame %s channel=%s id=%s user=%s conn=%s",
            frame.type,
            frame.channel,
            frame.id,
            getattr(ctx.principal.user, "pk", None),
            ctx.connection_id,
        )
    return frame


async def method_echo(ctx: FrameContext, payload: Any) -> Any:
    return payload


async def method_time(ctx: FrameContext, payload: Any) -> Any:
    return {"ts": protocol.now_ms()}


BUILTIN_METHODS: dict[str, RequestMethod] = {"echo": method_echo, "time": method_time}


@functools.cache
def transformers() -> tuple[Transformer, ...]:
    loaded: list[Transformer] = []
    for path in settings.REALTIME_PIPELINE:
        try:
            loaded.append(import_string(path))
        except ImportError as exc:
            raise ImproperlyConfigured(f"REALTIME_PIPELINE: cannot import {path!r}: {exc}") from exc
    loaded.extend(ep.load() for ep in entry_points(group="webconnect.realtime.transformers"))
    return tuple(loaded)


@functools.cache
def request_methods() -> dict[str, RequestMethod]:
    methods = dict(BUILTIN_METHODS)
    for item in settings.REALTIME_REQUEST_METHODS:
        name, sep, path = item.partition("=")
        if not sep or not protocol.METHOD_RE.match(name.strip()):
            raise ImproperlyConfigured(f"REALTIME_REQUEST_METHODS: expected name=dotted.path, got {item!r}")
        try:
            methods[name.strip()] = import_string(path.strip())
        except ImportError as exc:
            raise ImproperlyConfigured(f"REALTIME_REQUEST_METHODS: cannot import {path!r}: {exc}") from exc
    for ep in entry_points(group="webconnect.realtime.methods"):
        methods[ep.name] = ep.load()
    return methods


async def run(ctx: FrameContext, frame: protocol.Frame) -> protocol.Frame | None:
    for transformer in transformers():
        result = await transformer(ctx, frame)
        if result is None:
            return None
        frame = result
    return frame


def reset() -> None:
    """Forget loaded transformers and methods (tests that change the settings)."""
    transformers.cache_clear()
    request_methods.cache_clear()
