"""Broker message -> channel: published as the bridge's service account, through the real-time publish service.

So an ingested message meets the same access policies, rate limits and payload schema as any other publish,
and the caller acknowledges it to its broker only after `ingest` returned STORED (or DUPLICATE).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from bridges import metrics, store
from webconnect.identity import ConnectionAuth, Principal, principal_for_user
from webconnect.kernel.outages import is_unavailable
from webconnect.realtime import protocol
from webconnect.realtime.services import channel_publish

logger = logging.getLogger(__name__)

# Codes after which trying again would give the same answer: the message is refused, not retried.
PERMANENT = {"bad_request", "forbidden", "unauthorized", "not_found"}


class Outcome(enum.Enum):
    STORED = "stored"  # acknowledge
    DUPLICATE = "duplicate"  # seen before and stored then: acknowledge
    REJECTED = "rejected"  # will never be stored: acknowledge (MQTT) or reject to the dead-letter exchange (AMQP)
    RETRY = "retry"  # an outage or a rate limit: keep it and try again after `retry_after`


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    detail: str = ""
    retry_after: float = 1.0


def service_principal(user: Any, target: str) -> Principal:
    """The bridge acting as its configured account: only real-time writes, auth method "bridge" in policies."""
    return principal_for_user(
        user,
        auth=ConnectionAuth(method="bridge", scopes=frozenset({"realtime:write"}), extra={"bridge": target}),
    )


def dedup_key(target: str, namespace: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{store.prefix()}:seen:{target}:{namespace}:{digest}"


async def ingest(
    *, target: str, namespace: str, user: Any, channel: str | None, body: bytes, dedup: str | None
) -> Result:
    """Publish one broker message into `channel` (which must be in `namespace`); what to tell the broker."""
    if channel is None or not protocol.valid_channel(channel) or protocol.namespace_of(channel) != namespace:
        return _rejected(target, "bad_request", f"no channel of namespace {namespace!r} for this message")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _rejected(target, "bad_request", f"the message for {channel} is not JSON")
    client = store.redis_client()
    seen = dedup_key(target, namespace, f"{channel}\0{dedup}") if dedup else None
    try:
        if seen is not None and await client.exists(seen):
            return Result(Outcome.DUPLICATE)
        await channel_publish(
            principal=service_principal(user, target), channel=channel, payload=payload, source=target
        )
    except protocol.ProtocolError as error:
        if error.code in PERMANENT:
            return _rejected(target, error.code, error.message)
        return Result(Outcome.RETRY, f"{error.code}: {error.message}", retry_after=error.retry_after or 1.0)
    except Exception as exc:
        if is_unavailable(exc):
            return Result(Outcome.RETRY, f"unavailable: {exc}")
        raise
    metrics.INGESTED.labels(target).inc()
    if seen is not None:
        try:
            await client.set(seen, b"1", ex=settings.BRIDGES_DEDUP_SECONDS)
        except Exception as exc:  # stored already: acknowledging is right, a redelivery may duplicate it
            logger.warning("bridges: dedup mark for %s not written: %s", channel, exc)
    return Result(Outcome.STORED)


def _rejected(target: str, code: str, detail: str) -> Result:
    metrics.REJECTED.labels(target, code).inc()
    logger.warning("bridges: %s message refused (%s): %s", target, code, detail)
    return Result(Outcome.REJECTED, f"{code}: {detail}")
