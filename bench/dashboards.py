"""Live dashboards under load: ingest rate, delivery to 100 open dashboards, latency, CPU per delivered point.

    .venv/bin/python bench/dashboards.py [--dashboards 100] [--seconds 20] [--rate 200] [--batch 20]

One Daphne process (`manage.py serve`, embedded mode: SQLite in a temporary
directory, in-process hub) serves `--dashboards` dashboards of 6 widgets each;
every widget reads one of 6 channels, and each open dashboard is one WebSocket
subscribed to its widgets' channels, as the page does. A producer posts batches
to the ingest endpoint at `--rate` messages per second (spread over the 6
channels); each message carries its send time, so the clients measure
publish-to-receipt latency. The server's CPU time comes from /proc.

Figures printed: messages ingested per second, points recorded per second (the
recorder's writes), deliveries per second (messages x subscribers), latency
p50/p99 from the ingest request to the client receiving the frame, and the
server's CPU per delivered point. The clients also count what a page would
draw with coalescing (one value per series per 60 Hz frame) against what arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = [f"demo.bench{i}" for i in range(6)]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def setup(dashboards: int) -> str:
    """Migrate, create the user, dashboards and widgets; returns a token."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from io import StringIO

    from django.contrib.auth import get_user_model

    from dashboards import services
    from dashboards.ops import ensure_namespaces
    from policies.models import ConnectionLimitPolicy, RateLimitPolicy

    ensure_namespaces(demo=True)
    # One user with 100 open dashboards and a 200 msg/s producer is the point here: lift the defaults.
    ConnectionLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)
    RateLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)
    user = get_user_model().objects.create_user("bench", is_staff=True)
    kinds = ["line", "gauge", "stat", "bar", "line", "stat"]  # all numeric: every message is recorded
    for d in range(dashboards):
        dashboard = services.dashboard_create(owner=user, title=f"Bench {d}", visibility="public")
        for kind, channel in zip(kinds, CHANNELS, strict=True):
            services.widget_create(dashboard=dashboard, kind=kind, title=kind, channel=channel, value_paths=["v"])
    out = StringIO()
    call_command("createtoken", "bench", scopes="dashboards:write realtime:read realtime:write", stdout=out)
    return out.getvalue().strip()


def points_recorded() -> int:
    from django.db import connection

    from dashboards.models import SeriesPoint

    connection.close()
    return SeriesPoint.objects.filter(channel__in=CHANNELS).count()


class Frames:
    """What a page draws: per open dashboard, the series that changed since the last 60 Hz frame."""

    def __init__(self) -> None:
        self.pending: list[set[str]] = []
        self.draws = 0
        self.frames = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1 / 60)
            self.frames += 1
            for changed in self.pending:
                self.draws += len(changed)
                changed.clear()


async def dashboard_client(url: str, token: str, latencies: list[float], counts: list[int], ready: asyncio.Event,
                           opened: list[int], total: int, frames: Frames) -> None:  # fmt: skip
    import websockets

    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        for channel in CHANNELS:
            await ws.send(json.dumps({"header": {"type": "subscribe", "channel": channel, "id": channel}}))
        acks = 0
        while acks < len(CHANNELS):
            frame = json.loads(await ws.recv())
            acks += frame["header"]["type"] == "ack"
        changed: set[str] = set()
        frames.pending.append(changed)
        opened[0] += 1
        if opened[0] == total:
            ready.set()
        async for text in ws:
            frame = json.loads(text)
            header = frame["header"]
            if header["type"] == "message":
                latencies.append(time.time() - frame["payload"]["sent"])
                counts[0] += 1
                changed.add(header["channel"])  # coalesced: one draw per series per frame
            elif header["type"] == "ping":
                await ws.send('{"header":{"type":"pong"}}')


def post(url: str, token: str, channel: str, messages: list[Any]) -> None:
    request = urllib.request.Request(  # noqa: S310  (the local bench server)
        url,
        data=json.dumps({"channel": channel, "messages": messages}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()


async def produce(base: str, token: str, rate: int, batch: int, seconds: float) -> int:
    url = f"{base}/api/dashboards/ingest/"
    interval = batch / rate
    sent = 0
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        channel = CHANNELS[i % len(CHANNELS)]
        i += 1
        now = time.time()
        messages = [{"v": (sent + k) % 100, "sent": now} for k in range(batch)]
        await asyncio.to_thread(post, url, token, channel, messages)
        sent += batch
        delay = started + (sent / rate) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif interval and delay < -5:
            break  # the server cannot keep up with the asked rate; stop rather than queue
    return sent


async def run(args: argparse.Namespace, token: str, port: int, pid: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(urllib.request.urlopen, f"{base}/healthz")  # starts the recorder
    latencies: list[float] = []
    counts = [0]
    opened = [0]
    ready = asyncio.Event()
    frames = Frames()
    clients = [
        asyncio.create_task(
            dashboard_client(
                f"ws://127.0.0.1:{port}/ws/", token, latencies, counts, ready, opened, args.dashboards, frames
            )
        )
        for _ in range(args.dashboards)
    ]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(2.5)  # the recorder has picked up the widget channels
    recorded_before = await asyncio.to_thread(points_recorded)
    latencies.clear()
    counts[0] = 0
    ticker = asyncio.create_task(frames.run())
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    sent = await produce(base, token, args.rate, args.batch, args.seconds)
    elapsed_send = time.monotonic() - started
    expected = sent * args.dashboards
    for _ in range(100):  # let deliveries drain
        if counts[0] >= expected:
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    ticker.cancel()
    recorded = 0
    for _ in range(50):  # the recorder writes every half second
        recorded = await asyncio.to_thread(points_recorded) - recorded_before
        if recorded >= sent:
            break
        await asyncio.sleep(0.2)
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    ordered = sorted(latencies)
    return {
        "dashboards": args.dashboards,
        "widgets": args.dashboards * 6,
        "messages_ingested": sent,
        "ingest_per_s": round(sent / elapsed_send, 1),
        "points_recorded": recorded,
        "recorded_per_s": round(recorded / elapsed_send, 1),
        "deliveries": counts[0],
        "deliveries_expected": expected,
        "deliveries_per_s": round(counts[0] / elapsed, 1),
        "latency_ms_p50": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "latency_ms_p99": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
        "coalesced_draws": frames.draws,
        "coalesced_draws_per_dashboard_per_s": round(frames.draws / args.dashboards / elapsed, 1),
        "received_per_dashboard_per_s": round(counts[0] / args.dashboards / elapsed, 1),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_delivery": round(cpu / max(1, counts[0]) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboards", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=200, help="messages per second posted to the ingest endpoint")
    parser.add_argument("--batch", type=int, default=20, help="messages per ingest request")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="webconnect-bench-dash-")
    env = {**os.environ, "WEBCONNECT_DATA_DIR": data_dir, "DEBUG": "true", "LOG_LEVEL": "WARNING"}
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "webconnect.settings"
    os.environ.update(env)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(ROOT))
    token = setup(args.dashboards)

    port = free_port()
    log = Path(data_dir) / "server.log"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        result = asyncio.run(run(args, token, port, server.pid))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
