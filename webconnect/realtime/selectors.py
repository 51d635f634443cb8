"""Reads for the real-time layer: namespace configuration, cached per process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from webconnect.models import Namespace

# Namespace rows change rarely (admin edits); each process re-reads them at most
# this often instead of querying the database on every frame.


@dataclass(frozen=True)
class NamespaceConfig:
    name: str
    history_size: int
    history_ttl: int
    presence: bool
    join_leave: bool
    client_publish: bool
    anonymous_read: bool
    payload_schema: dict[str, Any] | None

    def attrs(self) -> dict[str, Any]:
        """The attributes authorization rules see on a Channel resource."""
        return {
            "namespace": self.name,
            "anonymous_read": self.anonymous_read,
            "client_publish": self.client_publish,
            "presence": self.presence,
        }


_cache: tuple[float, dict[str, NamespaceConfig]] = (0.0, {})


def namespaces_all() -> dict[str, NamespaceConfig]:
    global _cache
    loaded_at, table = _cache
    if time.monotonic() - loaded_at < settings.REALTIME_NAMESPACE_CACHE_SECONDS:
        return table
    table = {
        row.name: NamespaceConfig(
            name=row.name,
            history_size=row.history_size,
            history_ttl=max(1, row.history_ttl),
            presence=row.presence,
            join_leave=row.join_leave,
            client_publish=row.client_publish,
            anonymous_read=row.anonymous_read,
            payload_schema=row.payload_schema,
        )
        for row in Namespace.objects.all()
    }
    _cache = (time.monotonic(), table)
    return table


def namespace_get(name: str) -> NamespaceConfig | None:
    return namespaces_all().get(name)


# A name missing from the cached table is looked up again after this long, so a
# namespace an administrator just created works within a second, not REALTIME_NAMESPACE_CACHE_SECONDS.
MISS_RELOAD_SECONDS = 1.0


async def anamespace_get(name: str) -> NamespaceConfig | None:
    loaded_at, table = _cache
    age = time.monotonic() - loaded_at
    if age < settings.REALTIME_NAMESPACE_CACHE_SECONDS and (name in table or age < MISS_RELOAD_SECONDS):
        return table.get(name)
    if age < settings.REALTIME_NAMESPACE_CACHE_SECONDS:
        namespace_cache_clear()
    found: NamespaceConfig | None = await database_sync_to_async(namespace_get)(name)
    return found


async def any_anonymous_namespace() -> bool:
    table = await database_sync_to_async(namespaces_all)()
    return any(ns.anonymous_read for ns in table.values())


def namespace_cache_clear() -> None:
    global _cache
    _cache = (0.0, {})
