"""Per-channel subscriptions: a server process hears on Redis only the channels its sockets subscribe to.

Two real server processes on a Redis of the test's own: what Redis reports
(`PUBSUB NUMPAT`, `NUMSUB`) shows who is subscribed to what, and a subscribe's
ack promises that the next message published from the other process arrives.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from policies.models import RateLimitPolicy
from tests.conftest import LiveServer, start_server
from tests.kernel.conftest import install_namespaces
from tests.kernel.support import Envelope, PrivateRedis, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_default_publish_limits(transactional_db: Any) -> None:
    RateLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def _numsub(redis_port: int, topics: list[str]) -> dict[str, int]:
    import redis

    client = redis.Redis(port=redis_port, socket_timeout=5)
    try:
        return {name.decode(): int(count) for name, count in client.pubsub_numsub(*topics)}
    finally:
        client.close()


def _numpat(redis_port: int) -> int:
    import redis

    client = redis.Redis(port=redis_port, socket_timeout=5)
    try:
        return int(client.pubsub_numpat())
    finally:
        client.close()


def messages(envelope: Envelope, channel: str) -> list[dict[str, Any]]:
    return [f for f in envelope.of_type("message") if f["header"].get("channel") == channel]


async def test_a_process_receives_only_the_channels_its_sockets_subscribe_to(
    private_redis: PrivateRedis, test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    await sync_to_async(install_namespaces)()
    token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    prefix = f"t{uuid.uuid4().hex[:8]}:rt"
    env = {"REDIS_URL": private_redis.url, "REALTIME_REDIS_PREFIX_OWN": prefix}
    servers: list[LiveServer] = []
    sockets: list[Envelope] = []
    try:
        servers += await asyncio.gather(
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
        )
        one, two = servers
        a = await Envelope.connect(one.ws_url, token, "a")
        b = await Envelope.connect(two.ws_url, token, "b")
        sockets += [a, b]
        x, y = "chat.only-x", "chat.only-y"
        topic = {name: f"{prefix}:{{{name}}}:pub" for name in (x, y)}
        assert (await a.call("subscribe", channel=x, within=10))["header"]["type"] == "ack"
        assert (await b.call("subscribe", channel=y, within=10))["header"]["type"] == "ack"

        # Redis holds no pattern subscription, and exactly one process per channel: the one whose
        # socket subscribed (it must be, since that socket gets the channel's messages below).
        assert _numpat(private_redis.port) == 0
        assert _numsub(private_redis.port, list(topic.values())) == {topic[x]: 1, topic[y]: 1}
        for n in range(5):
            assert (await b.call("publish", {"n": n}, channel=x, within=10))["header"]["type"] == "ack"
            assert (await a.call("publish", {"n": n}, channel=y, within=10))["header"]["type"] == "ack"
        await wait_for(lambda: len(messages(a, x)) == 5 and len(messages(b, y)) == 5, 10, "messages did not arrive")
        assert not messages(a, y) and not messages(b, x)

        # The last socket leaves: the process unsubscribes on Redis.
        assert (await a.call("unsubscribe", channel=x, within=10))["header"]["type"] == "ack"
        await wait_for(lambda: _numsub(private_redis.port, [topic[x]])[topic[x]] == 0, 10, "still subscribed to x")
        await b.close()
        await wait_for(lambda: _numsub(private_redis.port, [topic[y]])[topic[y]] == 0, 10, "still subscribed to y")
        assert _numpat(private_redis.port) == 0
    finally:
        for socket in sockets:
            await socket.close()
        for server in servers:
            server.stop()


async def test_a_subscribe_ack_means_the_next_publish_from_another_process_arrives(
    private_redis: PrivateRedis, test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    await sync_to_async(install_namespaces)()
    token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    env = {"REDIS_URL": private_redis.url, "REALTIME_REDIS_PREFIX_OWN": f"t{uuid.uuid4().hex[:8]}:rt"}
    servers: list[LiveServer] = []
    sockets: list[Envelope] = []
    try:
        servers += await asyncio.gather(
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
        )
        one, two = servers
        subscriber = await Envelope.connect(one.ws_url, token, "sub")
        other = await Envelope.connect(one.ws_url, token, "other")  # a second socket of the same process
        publisher = await Envelope.connect(two.ws_url, token, "pub")
        sockets += [subscriber, other, publisher]

        # A fresh channel each time: each subscribe is a new Redis subscription of that process.
        for n in range(15):
            channel = f"chat.fresh-{n}"
            assert (await subscriber.call("subscribe", channel=channel, within=10))["header"]["type"] == "ack"
            assert (await publisher.call("publish", {"n": n}, channel=channel, within=10))["header"]["type"] == "ack"
        await wait_for(
            lambda: all(len(messages(subscriber, f"chat.fresh-{n}")) == 1 for n in range(15)),
            10,
            lambda: f"missing: {[n for n in range(15) if not messages(subscriber, f'chat.fresh-{n}')]}",
        )

        # An unsubscribe racing a re-subscribe in the same process leaves the process subscribed:
        # the other socket leaves (the last one there) while the subscriber comes back at once.
        for n in range(10):
            channel = f"chat.race-{n}"
            assert (await other.call("subscribe", channel=channel, within=10))["header"]["type"] == "ack"
            leaving = asyncio.ensure_future(other.call("unsubscribe", channel=channel, within=10))
            joining = asyncio.ensure_future(subscriber.call("subscribe", channel=channel, within=10))
            left, joined = await asyncio.gather(leaving, joining)
            assert left["header"]["type"] == "ack" and joined["header"]["type"] == "ack", (left, joined)
            assert (await publisher.call("publish", {"n": n}, channel=channel, within=10))["header"]["type"] == "ack"
        await wait_for(
            lambda: all(len(messages(subscriber, f"chat.race-{n}")) == 1 for n in range(10)),
            10,
            lambda: f"missing after a race: {[n for n in range(10) if not messages(subscriber, f'chat.race-{n}')]}",
        )
        # The same socket unsubscribing and subscribing back to back.
        for n in range(10):
            channel = "chat.flap"
            await subscriber.call("subscribe", channel=channel, within=10)
            gone = asyncio.ensure_future(subscriber.call("unsubscribe", channel=channel, within=10))
            back = asyncio.ensure_future(subscriber.call("subscribe", channel=channel, within=10))
            await asyncio.gather(gone, back)
            assert (await publisher.call("publish", {"n": n}, channel=channel, within=10))["header"]["type"] == "ack"
            await wait_for(lambda n=n: len(messages(subscriber, "chat.flap")) == n + 1, 10, f"flap {n} not delivered")
        assert _numpat(private_redis.port) == 0
    finally:
        for socket in sockets:
            await socket.close()
        for server in servers:
            server.stop()
