"""Channels on a Redis Cluster of the test's own (3 masters, 3 replicas), through live server processes.

A channel's history keys and its sharded pub/sub topic share one slot; publish,
subscribe, history and presence work across processes; and when one master is
SIGKILLed during a steady publish, the channels on the other masters go on
without a gap while the failed slots' channels answer `unavailable`, then
resume after the replica takes over, each with every acknowledged message or
a `recovered: false` covering what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from policies.models import RateLimitPolicy
from tests.conftest import LiveServer, start_server
from tests.kernel.conftest import install_namespaces
from tests.kernel.support import Envelope, PrivateRedis, PrivateRedisCluster, wait_for
from tests.kernel.test_redis_outage import Acked

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

READY_TIMEOUT = 2
ANSWER_WITHIN = READY_TIMEOUT + 10.0


@pytest.fixture(autouse=True)
def _no_default_publish_limits(transactional_db: Any) -> None:
    RateLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)


@pytest.fixture
def cluster() -> Iterator[PrivateRedisCluster]:
    if not _has_redis_cli():
        pytest.skip("redis-cli is needed to form a cluster")
    cluster = PrivateRedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _has_redis_cli() -> bool:
    import shutil

    return shutil.which("redis-cli") is not None and shutil.which("redis-server") is not None


def _servers_env(cluster: PrivateRedisCluster, prefix: str) -> dict[str, str]:
    return {
        "REALTIME_REDIS_CLUSTER_URL": cluster.url,
        "REALTIME_REDIS_PREFIX_OWN": prefix,
        "REALTIME_BUS_READY_TIMEOUT": str(READY_TIMEOUT),
    }


def _node_client(node: PrivateRedis) -> Any:
    import redis

    return redis.Redis(port=node.port, socket_timeout=2)


def messages(envelope: Envelope, channel: str) -> list[dict[str, Any]]:
    return [f for f in envelope.of_type("message") if f["header"].get("channel") == channel]


def not_recovered(envelope: Envelope, channel: str) -> list[dict[str, Any]]:
    return [
        f
        for f in envelope.of_type("subscribed")
        if f["header"].get("channel") == channel and f["payload"].get("recovered") is False
    ]


async def test_channels_live_on_the_cluster_one_slot_each(
    cluster: PrivateRedisCluster, test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    from redis.crc import key_slot

    await sync_to_async(install_namespaces)()
    token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    prefix = f"t{uuid.uuid4().hex[:8]}:rt"
    env = _servers_env(cluster, prefix)
    servers: list[LiveServer] = []
    sockets: list[Envelope] = []
    try:
        servers += await asyncio.gather(
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
        )
        a = await Envelope.connect(servers[0].ws_url, token, "a")
        b = await Envelope.connect(servers[1].ws_url, token, "b")
        sockets += [a, b]
        channel = "chat.on-the-cluster"
        assert (await a.call("subscribe", channel=channel, within=10))["header"]["type"] == "ack"
        assert (await b.call("subscribe", channel=channel, within=10))["header"]["type"] == "ack"
        for n in range(3):
            answer = await b.call("publish", {"n": n}, channel=channel, within=10)
            assert answer["header"]["type"] == "ack", answer
        await wait_for(lambda: len(messages(a, channel)) == 3, 10, lambda: f"a got {messages(a, channel)}")
        assert [m["payload"]["n"] for m in messages(a, channel)] == [0, 1, 2]

        history = await a.call("history", channel=channel, limit=10, within=10)
        assert [m["payload"]["n"] for m in history["payload"]["messages"]] == [0, 1, 2], history
        presence = await a.call("presence", channel=channel, within=10)
        assert [c["connections"] for c in presence["payload"]["clients"]] == [2], presence

        # The channel's keys and its topic hash to one slot, held by one master.
        base = f"{prefix}:{{{channel}}}"
        names = [f"{base}:offset", f"{base}:epoch", f"{base}:stream", f"{base}:presence", f"{base}:pub"]
        slots = {key_slot(name.encode()) for name in names}
        assert len(slots) == 1, slots
        master = cluster.master_of(f"{base}:pub")
        client = _node_client(master)
        try:
            assert {int(client.execute_command("CLUSTER", "KEYSLOT", name)) for name in names} == slots
            assert client.exists(f"{base}:offset", f"{base}:epoch", f"{base}:stream") == 3
            reply = client.execute_command("PUBSUB", "SHARDNUMSUB", f"{base}:pub")
            assert [int(x) for x in reply[1::2]] == [2], reply  # both processes, on the slot's master
        finally:
            client.close()
        for node in cluster.nodes:
            client = _node_client(node)
            try:
                assert int(client.pubsub_numpat()) == 0
            finally:
                client.close()
    finally:
        for socket in sockets:
            await socket.close()
        for server in servers:
            server.stop()


def _channels_over_masters(cluster: PrivateRedisCluster, prefix: str, per_master: int) -> dict[int, list[str]]:
    """Channels, `per_master` on each master (by port)."""
    spread: dict[int, list[str]] = {}
    n = 0
    masters = {cluster.master_of(f"probe{{{k}}}").port for k in range(64)}
    while any(len(spread.get(port, [])) < per_master for port in masters):
        channel = f"chat.spread-{n}"
        port = cluster.master_of(f"{prefix}:{{{channel}}}:pub").port
        if len(spread.setdefault(port, [])) < per_master:
            spread[port].append(channel)
        n += 1
    return spread


async def test_a_master_fails_over_during_a_steady_publish(
    cluster: PrivateRedisCluster, test_database_name: str, alice: Any, mint_token: Callable[..., str]
) -> None:
    await sync_to_async(install_namespaces)()
    token = await sync_to_async(mint_token)("alice", "realtime:read realtime:write")
    prefix = f"t{uuid.uuid4().hex[:8]}:rt"
    env = _servers_env(cluster, prefix)
    spread = await asyncio.to_thread(_channels_over_masters, cluster, prefix, 2)
    victim_port = next(port for port in sorted(spread) if port != cluster.nodes[0].port)  # not the seed node
    failed = spread[victim_port]
    healthy = [c for port, chans in spread.items() if port != victim_port for c in chans]
    servers: list[LiveServer] = []
    sockets: list[Envelope] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        servers += await asyncio.gather(
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
            asyncio.to_thread(start_server, test_database_name, extra_env=env),
        )
        subscriber = await Envelope.connect(servers[1].ws_url, token, "sub")
        sockets.append(subscriber)
        for channel in failed + healthy:
            answer = await subscriber.call("subscribe", channel=channel, within=10)
            assert answer["header"]["type"] == "ack", answer

        acked: dict[str, list[Acked]] = {c: [] for c in failed + healthy}
        acked_at: dict[str, list[float]] = {c: [] for c in failed + healthy}
        refusals: dict[str, int] = dict.fromkeys(failed + healthy, 0)
        stop = asyncio.Event()

        async def publish(channel: str, publisher: Envelope) -> None:
            n = 0
            while not stop.is_set():
                answer = await publisher.call("publish", {"n": n}, channel=channel, within=ANSWER_WITHIN)
                if answer["header"]["type"] == "ack":
                    acked[channel].append(Acked(n, answer["payload"]["offset"], answer["payload"]["epoch"]))
                    acked_at[channel].append(time.monotonic())
                    n += 1
                    await asyncio.sleep(0.05)
                else:
                    assert answer["payload"]["code"] == "unavailable", f"{channel} publish {n}: {answer}"
                    refusals[channel] += 1
                    await asyncio.sleep(0.1)

        for channel in failed + healthy:
            publisher = await Envelope.connect(servers[0].ws_url, token, f"pub-{channel}")
            sockets.append(publisher)
            tasks.append(asyncio.create_task(publish(channel, publisher)))
        await wait_for(lambda: all(len(a) >= 10 for a in acked.values()), 20, "the steady publish did not start")

        victim = next(node for node in cluster.nodes if node.port == victim_port)
        victim.kill()
        killed_at = time.monotonic()
        # The failed slots' channels are back once each has new acknowledged publishes.
        counts = {c: len(acked[c]) for c in failed}
        await wait_for(
            lambda: all(len(acked[c]) > counts[c] + 5 for c in failed),
            60,
            lambda: f"the failed master's channels did not resume: {counts} -> { {c: len(acked[c]) for c in failed} }",
        )
        # The failed channels' outage: the longest silence between two acks that spans the kill.
        # (The first ack counted after the kill can be one that was already on its way, so
        # "kill to first ack" may be no outage at all on a loaded machine.)
        outages = []
        for c in failed:
            times = acked_at[c]
            gaps = [(b - a, a, b) for a, b in itertools.pairwise(times) if b > killed_at]
            outages.append(max(gaps)[1:])
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), ANSWER_WITHIN + 5)

        def missing(channel: str) -> list[int]:
            got = {m["header"]["offset"] for m in messages(subscriber, channel)}
            return [m.n for m in acked[channel] if m.offset not in got]

        # Other masters' channels: published throughout, every message delivered, no false alarm.
        for channel in healthy:
            for silent_from, silent_until in outages:
                during = [t for t in acked_at[channel] if silent_from < t < silent_until]
                assert during, f"{channel} (another master) stopped while the victim failed over"
            await wait_for(lambda c=channel: not missing(c), 10, lambda c=channel: f"{c} lost {missing(c)}")
            assert not not_recovered(subscriber, channel), f"{channel} was told recovered:false"
            assert refusals[channel] == 0, f"{channel} was refused {refusals[channel]} times"

        # The failed slots' channels: every acknowledged message arrived, or a recovered:false covers it.
        def silent(channel: str) -> list[int]:
            markers = [(f["payload"]["epoch"], f["payload"]["offset"]) for f in not_recovered(subscriber, channel)]
            got = {(m["header"]["epoch"], m["header"]["offset"]) for m in messages(subscriber, channel)}
            epochs = list(dict.fromkeys(m.epoch for m in acked[channel]))

            def covered(m: Acked) -> bool:
                return any(
                    (e == m.epoch and o >= m.offset) or (e != m.epoch and e not in epochs[: epochs.index(m.epoch) + 1])
                    for e, o in markers
                )

            return [m.n for m in acked[channel] if (m.epoch, m.offset) not in got and not covered(m)]

        assert any(refusals[c] for c in failed), "the failed master's channels were never answered `unavailable`"
        for channel in failed:
            await wait_for(lambda c=channel: not silent(c), 15, lambda c=channel: f"{c}: silently lost {silent(c)}")
        print(
            f"failed channels silent for {[round(b - a, 1) for a, b in outages]} s; "
            f"refusals on the failed master's channels "
            f"{ {c: refusals[c] for c in failed} }; recovered:false there "
            f"{ {c: len(not_recovered(subscriber, c)) for c in failed} }; "
            f"acked per channel { {c: len(a) for c, a in acked.items()} }"
        )
        assert subscriber.close_code is None, "the subscriber's socket closed"
    finally:
        stop_all = [t for t in tasks if not t.done()]
        for task in stop_all:
            task.cancel()
        for socket in sockets:
            await socket.close()
        for server in servers:
            server.stop()


async def test_the_bus_relays_keyed_and_process_wide_kinds_over_the_cluster(
    cluster: PrivateRedisCluster, settings: Any
) -> None:
    """Two buses (as two processes would): a keyed kind reaches only the bus subscribed to that key
    (sharded pub/sub), a process-wide kind reaches both (cluster-wide PUBLISH), from async and sync code."""
    from webconnect.kernel.bus import Bus, keyed

    settings.REALTIME_REDIS_CLUSTER_URL = cluster.url
    settings.REALTIME_REDIS_PREFIX = f"t{uuid.uuid4().hex[:8]}:rt"
    keyed("test-doc")
    one, two = Bus(), Bus()
    got: dict[str, list[tuple[str, str, bytes]]] = {"one": [], "two": []}
    for name, bus in (("one", one), ("two", two)):
        bus.on("test-doc", lambda key, data, name=name: got[name].append(("doc", key, data)))
        bus.on("test-ctl", lambda key, data, name=name: got[name].append(("ctl", key, data)))
        await bus.start()
    try:
        keys = [f"d{n}" for n in range(12)]  # spread over the masters
        for key in keys:
            await one.subscribe("test-doc", key)
        await two.subscribe("test-doc", keys[0])
        for key in keys:
            await two.publish("test-doc", key, b"update " + key.encode())
        await asyncio.to_thread(two.publish_threadsafe, "test-ctl", "policy", b"v2")
        await wait_for(
            lambda: len(got["one"]) == len(keys) + 1 and len(got["two"]) == 2,
            10,
            lambda: f"got {got}",
        )
        assert sorted(k for kind, k, _ in got["one"] if kind == "doc") == sorted(keys)
        assert ("doc", keys[0], b"update d0") in got["two"] and ("ctl", "policy", b"v2") in got["two"]
        # The last user leaves: the bus unsubscribes, and hears that key no more.
        for key in keys:
            one.unsubscribe("test-doc", key)
        await wait_for(
            lambda: not one.subscribed_topics() or all("test-doc" not in t for t in one.subscribed_topics()),
            5,
            "still wanted",
        )
        await asyncio.sleep(0.3)
        before = len(got["one"])
        await two.publish("test-doc", keys[1], b"late")
        await asyncio.sleep(0.5)
        assert len(got["one"]) == before
    finally:
        for bus in (one, two):
            for link in [*bus._links.values(), *([bus._control] if bus._control else [])]:
                link.retired = True
                link.task.cancel()
            with contextlib.suppress(Exception):
                await bus.redis.aclose()
