"""Publish plausible plant-sensor readings to the demo dashboard until stopped.

It goes through the server's batch ingest endpoint, like any producer would, so
the readings reach live charts and are recorded as series points.
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.request
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from dashboards.demo import DEMO_CHANNEL, DEMO_EVENTS, builtin_dashboards_ensure, producer_user

EVENTS = ["shift change", "filter replaced", "line 2 slowed down", "quality check passed", "pallet dispatched"]


class Sensors:
    """Random walks that stay in plausible ranges."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.t1, self.t2, self.pressure, self.throughput = 21.0, 23.5, 5.0, 120.0
        self.motors = [40.0, 55.0, 35.0]

    def _walk(self, value: float, step: float, low: float, high: float) -> float:
        return min(high, max(low, value + self.rng.uniform(-step, step)))

    def reading(self, now: float) -> dict[str, Any]:
        self.t1 = self._walk(self.t1, 0.3, 15, 35)
        self.t2 = self._walk(self.t2, 0.3, 15, 35)
        self.pressure = self._walk(self.pressure + 0.05 * math.sin(now / 20), 0.25, 0, 10)
        self.throughput = self._walk(self.throughput, 4, 60, 200)
        self.motors = [self._walk(m, 3, 0, 100) for m in self.motors]
        return {
            "temp": {"line1": round(self.t1, 2), "line2": round(self.t2, 2)},
            "pressure": round(self.pressure, 2),
            "throughput": round(self.throughput),
            "motors": {"a": round(self.motors[0]), "b": round(self.motors[1]), "c": round(self.motors[2])},
        }


class Command(BaseCommand):
    help = "Publish simulated sensor readings to the demo dashboard (through the ingest endpoint) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the webconnect server")
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between readings")
        parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until stopped)")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args: Any, url: str, interval: float, seconds: float, seed: int | None, **options: Any) -> None:
        user = producer_user()
        builtin_dashboards_ensure(owner=user)
        self.token = self._mint(user.username)
        self.url = url.rstrip("/") + "/api/dashboards/ingest/"
        sensors = Sensors(seed)
        deadline = time.monotonic() + seconds if seconds > 0 else math.inf
        sent = failures = 0
        self.stdout.write(f"demo producer: publishing to {DEMO_CHANNEL} every {interval}s via {self.url}")
        try:
            while time.monotonic() < deadline:
                now = time.time()
                ok = self._post(DEMO_CHANNEL, [sensors.reading(now)], user.username)
                if ok and sensors.rng.random() < interval / 8:
                    self._post(DEMO_EVENTS, [{"event": sensors.rng.choice(EVENTS), "at": round(now)}], user.username)
                sent += ok
                failures += not ok
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"demo producer: stopped after {sent} readings ({failures} failed)")

    def _mint(self, username: str) -> str:
        out = StringIO()
        call_command("createtoken", username, scopes="dashboards:write realtime:write", expires=86400, stdout=out)
        return out.getvalue().strip()

    def _post(self, channel: str, messages: list[Any], username: str) -> bool:
        body = json.dumps({"channel": channel, "messages": messages}).encode()
        request = urllib.request.Request(  # noqa: S310  (an http(s) URL given by the operator)
            self.url,
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                return True
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                self.token = self._mint(username)  # expired: a fresh one for the next reading
            else:
                self.stderr.write(f"demo producer: {exc.code} {exc.read()[:200]!r}")
            return False
        except (urllib.error.URLError, OSError):
            return False  # the server is not up yet, or restarting: try again next tick
