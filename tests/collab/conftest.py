from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def _stop_collab_log_writers(django_db_setup: Any) -> Iterator[None]:
    """The rooms' log-writer threads hold database connections: end them before the test
    database is dropped (depending on django_db_setup makes this teardown run first)."""
    yield
    from collab import rooms

    rooms.shutdown_log_writers()


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Each test runs its own event loop; channels_redis binds locks and connections to the
    loop that first used them, so every test gets a new layer instance."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
