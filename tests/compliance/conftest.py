from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings


@pytest.fixture(autouse=True)
def _forget_sealed_history() -> Iterator[None]:
    """Channel history these tests sealed under throwaway keys must not outlive them.

    A later test (here or elsewhere in the run) reading every stream would meet a
    key id it does not hold, as a server would after a key was dropped too early.
    """
    yield
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{settings.REALTIME_REDIS_PREFIX}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
