from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _stop_collab_log_writers() -> Iterator[None]:
    """The rooms' log-writer threads hold database connections: end them before the test database is dropped."""
    yield
    from collab import rooms

    rooms.shutdown_log_writers()
