"""The runner's state in Redis (`<prefix>:bridges:status`), read by the web processes' figures."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bridges import metrics, store

logger = logging.getLogger(__name__)


class Status:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.fields: dict[str, str] = {}

    def up(self, target: str, up: bool, error: str = "") -> None:
        was = self.fields.get(f"{target}.up")
        self.fields[f"{target}.up"] = "1" if up else "0"
        self.fields[f"{target}.error"] = error[:300]
        if was != self.fields[f"{target}.up"]:
            logger.log(
                logging.INFO if up else logging.WARNING, "bridges: %s %s %s", target, "up" if up else "down", error
            )

    def _forwarded(self) -> dict[str, str]:
        counts = {}
        for family in metrics.FORWARDED.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[f"{sample.labels['target']}.forwarded"] = str(int(sample.value))
        return counts

    async def heartbeat(self, interval: float = 1.0) -> None:
        """Write the state every `interval` seconds; a runner that stops writing counts as down."""
        key = store.status_key()
        while True:
            try:
                await self.client.hset(key, mapping={**self.fields, **self._forwarded(), "updated": str(time.time())})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("bridges: status not written: %s", exc)
            await asyncio.sleep(interval)
