"""Redis is SIGKILLed and restarted under a live subscription: no message is lost silently.

The Redis server is the test's own (no persistence), so a restart loses every
channel's history: a subscriber must then either get every message that was
acknowledged to the publisher, or be told `recovered: false` for what it may
have missed. Requests made while Redis is down are answered `unavailable`,
quickly; none hangs, and a handshake is not an HTTP 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import InvalidStatus

from policies.models import RateLimitPolicy
from tests.conftest import LiveServer, start_server
from tests.kernel.conftest import install_namespaces
from tests.kernel.support import Envelope, PrivateRedis, wait_for
from webconnect.kernel import codes

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_default_publish_limits(transactional_db: Any) -> None:
    """These tests publish as fast as acks come: they are about the bus, not the default publish limit."""
    RateLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)


CHANNEL = "chat.faults"
READY_TIMEOUT = 2  # REALTIME_BUS_READY_TIMEOUT of the server: how long a request waits for the bus
ANSWER_WITHIN = READY_TIMEOUT + 8.0  # an `unavailable` answer may take this long; more is a hang
TOTAL = 80
KILL_AFTER = 25  # acknowledged publishes before Redis dies


@dataclass(frozen=True)
class Acked:
    n: int
    offset: int
    epoch: str


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def silent_gaps(acked: list[Acked], subscriber: Envelope) -> list[Acked]:
    """Acknowledged messages the subscriber neither received nor was told it may have missed.

    A `subscribed` frame with `recovered: false` at (offset, epoch) covers every
    message of that epoch up to that offset, and every message of an earlier epoch.
    """
    order: dict[str, int] = {}
    for message in acked:
        order.setdefault(message.epoch, len(order))
    received = {
        (frame["header"]["epoch"], frame["header"]["offset"])
        for frame in subscriber.of_type("message")
        if frame["header"].get("channel") == CHANNEL
    }
    markers = [
        (frame["payload"]["epoch"], frame["payload"]["offset"])
        for frame in subscriber.of_type("subscribed")
        if frame["header"].get("channel") == CHANNEL and frame["payload"].get("recovered") is False
    ]

    def covered(message: Acked) -> bool:
        for epoch, offset in markers:
            if epoch == message.epoch and offset >= message.offset:
                return True
            if epoch != message.epoch and order.get(epoch, len(order)) > order[message.epoch]:
                return True
        return False

    return [m for m in acked if (m.epoch, m.offset) not in received and not covered(m)]


async def test_a_redis_restart_under_a_subscription_never_loses_a_message_silently(
    private_redis: PrivateRedis, test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    await sync_to_async(install_namespaces)()
    token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    server: LiveServer = await asyncio.to_thread(
        start_server,
        test_database_name,
        extra_env={"REDIS_URL": private_redis.url, "REALTIME_BUS_READY_TIMEOUT": str(READY_TIMEOUT)},
    )
    sockets: list[Envelope] = []
    publishing: asyncio.Task[None] | None = None
    try:
        subscriber = await Envelope.connect(server.ws_url, token, "sub")
        publisher = await Envelope.connect(server.ws_url, token, "pub")
        probe = await Envelope.connect(server.ws_url, token, "probe")
        sockets += [subscriber, publisher, probe]
        first = await subscriber.call("subscribe", channel=CHANNEL, within=10)
        assert first["header"]["type"] == "ack", first

        acked: list[Acked] = []
        refusals: list[float] = []  # how long each `unavailable` answer took

        async def publish_all() -> None:
            for n in range(TOTAL):
                while True:
                    started = time.monotonic()
                    answer = await publisher.call("publish", {"n": n}, channel=CHANNEL, within=ANSWER_WITHIN)
                    if answer["header"]["type"] == "ack":
                        acked.append(Acked(n, answer["payload"]["offset"], answer["payload"]["epoch"]))
                        break
                    assert answer["payload"]["code"] == "unavailable", f"publish {n} refused: {answer}"
                    refusals.append(time.monotonic() - started)
                    assert len(refusals) < 100, "publishes kept failing after Redis came back"
                    await asyncio.sleep(0.1)  # then the same message again
                await asyncio.sleep(0.02)

        publishing = asyncio.create_task(publish_all())
        await wait_for(lambda: len(acked) >= KILL_AFTER or publishing.done(), 20, "publishes were not acknowledged")
        private_redis.kill()
        killed_at = time.monotonic()

        # While Redis is down: a subscribe is answered `unavailable` (not left hanging) ...
        answer = await probe.call("subscribe", channel="chat.probe", within=ANSWER_WITHIN)
        subscribe_took = time.monotonic() - killed_at
        assert answer["header"]["type"] == "error" and answer["payload"]["code"] == "unavailable", answer
        # ... a new connection's handshake is no HTTP 500: it opens, then closes with 4503 or answers `unavailable`.
        try:
            fresh = await Envelope.connect(server.ws_url, token, "fresh")
        except InvalidStatus as exc:
            raise AssertionError(f"the handshake during the outage answered HTTP {exc.response.status_code}") from exc
        sockets.append(fresh)
        try:
            outcome = await fresh.call("subscribe", channel="chat.probe", within=ANSWER_WITHIN)
            assert outcome["payload"].get("code") == "unavailable", outcome
        except ConnectionError:
            assert fresh.close_code == codes.UNAVAILABLE, f"closed with {fresh.close_code} during the outage"
        await wait_for(lambda: bool(refusals) or publishing.done(), ANSWER_WITHIN, "no publish was refused")
        if publishing.done() and publishing.exception() is not None:
            raise AssertionError(f"the publisher failed during the outage: {publishing.exception()!r}")
        assert refusals, "the outage did not hit any publish: it ended before the publisher noticed"
        down_for = time.monotonic() - killed_at

        await asyncio.to_thread(private_redis.start)
        await asyncio.wait_for(publishing, 60)
        assert [m.n for m in acked] == list(range(TOTAL))
        assert max(refusals) < ANSWER_WITHIN

        # The subscriber hears of everything, or is told what it may have missed.
        await wait_for(
            lambda: not silent_gaps(acked, subscriber),
            15,
            lambda: (
                f"{len(silent_gaps(acked, subscriber))} of {TOTAL} acknowledged messages never reached "
                f"the subscriber and no recovered:false covers them: "
                f"{[m.n for m in silent_gaps(acked, subscriber)][:20]}"
            ),
        )
        markers = [f for f in subscriber.of_type("subscribed") if f["payload"].get("recovered") is False]
        assert markers, "Redis lost the channel's history, but the subscriber was never told recovered:false"
        assert subscriber.close_code is None and not subscriber.closed.is_set(), "the subscription's socket closed"
        received = [f for f in subscriber.of_type("message") if f["header"].get("channel") == CHANNEL]
        positions = [(f["header"]["epoch"], f["header"]["offset"]) for f in received]
        assert len(positions) == len(set(positions)), "a message was delivered twice"

        # Redis is back: subscribing works again.
        again = await probe.call("subscribe", channel="chat.probe", within=10)
        assert again["header"]["type"] == "ack", again
        print(
            f"{TOTAL} published, {len(refusals)} refusals (slowest {max(refusals):.2f} s), "
            f"subscribe refused after {subscribe_took:.2f} s, Redis down {down_for:.1f} s; "
            f"subscriber got {len(received)} messages and {len(markers)} recovered:false "
            f"at {[(m['payload']['epoch'], m['payload']['offset']) for m in markers]}; "
            f"epochs {sorted({m.epoch for m in acked})}"
        )
    finally:
        if publishing is not None:
            publishing.cancel()
        for socket in sockets:
            await socket.close()
        server.stop()


def _pubsub_client_ids(redis_port: int) -> set[str]:
    import redis

    client = redis.Redis(port=redis_port, socket_timeout=5)
    try:
        entries = cast(list[dict[str, Any]], client.client_list(_type="pubsub"))
        return {str(entry["id"]) for entry in entries}
    finally:
        client.close()


def _kill_clients(redis_port: int, ids: set[str]) -> None:
    import redis

    client = redis.Redis(port=redis_port, socket_timeout=5)
    try:
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
    finally:
        client.close()


async def test_a_lost_bus_subscription_is_refilled_from_history(
    private_redis: PrivateRedis, test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    """Redis keeps running (history intact) but one process loses its pub/sub connection while
    another keeps publishing: what it missed is filled from history, without a false recovered:false."""
    await sync_to_async(install_namespaces)()
    token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    env = {"REDIS_URL": private_redis.url, "REALTIME_BUS_READY_TIMEOUT": str(READY_TIMEOUT)}
    servers: list[LiveServer] = []
    sockets: list[Envelope] = []
    channel = "chat.refill"
    try:
        servers.append(await asyncio.to_thread(start_server, test_database_name, extra_env=env))
        subscriber = await Envelope.connect(servers[0].ws_url, token, "sub")
        sockets.append(subscriber)
        first = await subscriber.call("subscribe", channel=channel, within=10)
        assert first["header"]["type"] == "ack", first
        watcher_ids = await asyncio.to_thread(_pubsub_client_ids, private_redis.port)
        assert watcher_ids, "the subscriber's process holds no pub/sub connection"
        servers.append(await asyncio.to_thread(start_server, test_database_name, extra_env=env))
        publisher = await Envelope.connect(servers[1].ws_url, token, "pub")
        sockets.append(publisher)
        ping = await publisher.call("subscribe", channel="chat.other", within=10)  # its bus is up too
        assert ping["header"]["type"] == "ack", ping
        publisher_ids = await asyncio.to_thread(_pubsub_client_ids, private_redis.port) - watcher_ids
        assert publisher_ids, "the publisher's process holds no pub/sub connection"

        acked: list[Acked] = []
        kills = 0
        for n in range(90):
            answer = await publisher.call("publish", {"n": n}, channel=channel, within=10)
            assert answer["header"]["type"] == "ack", f"publish {n}: {answer}"
            acked.append(Acked(n, answer["payload"]["offset"], answer["payload"]["epoch"]))
            if n in (15, 45):
                # Only the subscriber's process loses its subscription; the publisher's keeps working.
                current = await asyncio.to_thread(_pubsub_client_ids, private_redis.port)
                await asyncio.to_thread(_kill_clients, private_redis.port, current - publisher_ids)
                kills += 1
            await asyncio.sleep(0.01)

        def received_n() -> set[int]:
            return {f["payload"]["n"] for f in subscriber.of_type("message") if f["header"].get("channel") == channel}

        await wait_for(
            lambda: received_n() >= set(range(90)),
            15,
            lambda: f"the subscriber lacks {sorted(set(range(90)) - received_n())} after {kills} lost subscriptions",
        )
        now_ids = await asyncio.to_thread(_pubsub_client_ids, private_redis.port)
        assert not now_ids & watcher_ids, "the subscriber's process never lost its pub/sub connection"
        assert publisher_ids <= now_ids, "the publisher's process lost its pub/sub connection too"
        assert len({m.epoch for m in acked}) == 1, "the history was not meant to be lost"
        markers = [f for f in subscriber.of_type("subscribed") if f["payload"].get("recovered") is False]
        assert not markers, f"history was intact, yet the subscriber was told recovered:false: {markers}"
        offsets = [
            f["header"]["offset"] for f in subscriber.of_type("message") if f["header"].get("channel") == channel
        ]
        assert offsets == sorted(set(offsets)), "messages arrived twice or out of order"
    finally:
        for socket in sockets:
            await socket.close()
        for server in servers:
            server.stop()
