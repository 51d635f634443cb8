"""RabbitMQ (AMQP 0-9-1, aio-pika): mirror the outbox to topic exchanges, ingest queues into channels.

Mirror: every queued message goes to its namespace's exchange with routing key = channel, message id =
epoch:offset, persistent delivery, on a channel with publisher confirms; it leaves the outbox only once
RabbitMQ confirmed it. A crash between the confirm and the delete sends it again: at-least-once, and
consumers drop duplicates by message id.
Ingest: a consumer per configured queue (prefetch BRIDGES_INGEST_PREFETCH); a message is acknowledged only
after it is stored in its channel, rejected (to the queue's dead-letter exchange, if it has one) when it
can never be stored, and held and retried on an outage or a rate limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from django.conf import settings

from bridges import metrics, outbox, store
from bridges.ingest import Outcome, ingest
from bridges.selectors import AMQP, AmqpRoute, asnapshot
from bridges.status import Status

logger = logging.getLogger(__name__)


def backoff(attempt: int) -> float:
    return float(min(5.0, 0.2 * 2**attempt))


async def mirror(url: str, box: outbox.Outbox, status: Status) -> None:
    attempt = 0
    while True:
        try:
            connection = await aio_pika.connect(url, timeout=5)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                status.up(AMQP, True)
                attempt = 0
                await _mirror_on(channel, box)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status.up(AMQP, False, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(backoff(attempt))
            attempt += 1


async def _mirror_on(channel: AbstractChannel, box: outbox.Outbox) -> None:
    exchanges: dict[str, AbstractExchange] = {}
    while True:
        entries = await box.read(settings.BRIDGES_BATCH_SIZE, block_ms=1000)
        if not entries:
            continue
        snapshot = await asnapshot()
        sendable: list[tuple[outbox.Entry, AbstractExchange]] = []
        orphans: list[outbox.Entry] = []
        for entry in entries:
            route = snapshot.amqp.get(entry.namespace)
            if route is None or not route.exchange:
                # Queued while the namespace had a mirror that an administrator has since removed.
                logger.warning(
                    "bridges: amqp mirror of %s removed: message %s not sent", entry.channel, entry.message_id
                )
                orphans.append(entry)
                continue
            if route.exchange not in exchanges:
                exchanges[route.exchange] = await channel.declare_exchange(
                    route.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                )
            sendable.append((entry, exchanges[route.exchange]))
        if orphans:
            await box.client.incrby(store.dropped_key(AMQP), len(orphans))
        # All of a batch in flight at once; each publish returns when RabbitMQ confirmed it.
        results = await asyncio.gather(
            *(exchange.publish(_message(entry), routing_key=entry.channel) for entry, exchange in sendable),
            return_exceptions=True,
        )
        confirmed = [
            entry for (entry, _), result in zip(sendable, results, strict=True) if not isinstance(result, BaseException)
        ]
        await box.done(confirmed + orphans)
        metrics.FORWARDED.labels(AMQP).inc(len(confirmed))
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]  # reconnect; the unconfirmed ones are still in the outbox


def _message(entry: outbox.Entry) -> aio_pika.Message:
    headers = entry.headers()
    return aio_pika.Message(
        entry.body(),
        message_id=entry.message_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={k: v for k, v in headers.items() if v is not None},
    )


async def consume(url: str, route: AmqpRoute, status: Status) -> None:
    attempt = 0
    while True:
        try:
            connection = await aio_pika.connect(url, timeout=5)
            async with connection:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=settings.BRIDGES_INGEST_PREFETCH)
                queue = await channel.declare_queue(route.queue, durable=True)
                attempt = 0
                async with queue.iterator() as messages:
                    async for message in messages:
                        await _ingest_one(message, route)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("bridges: amqp ingest from %s: %s: %s", route.queue, type(exc).__name__, exc)
            status.up(AMQP, False, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(backoff(attempt))
            attempt += 1


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


async def _ingest_one(message: AbstractIncomingMessage, route: AmqpRoute) -> None:
    channel = _text((message.headers or {}).get("channel")) or message.routing_key
    while True:
        result = await ingest(
            target=AMQP, namespace=route.namespace, user=route.service_user, channel=channel,
            body=message.body, dedup=message.message_id,
        )  # fmt: skip
        if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
            await message.ack()
            return
        if result.outcome is Outcome.REJECTED:
            await message.reject(requeue=False)
            return
        # Held, not requeued: requeueing would spin on it and reorder the queue.
        await asyncio.sleep(min(5.0, result.retry_after))
