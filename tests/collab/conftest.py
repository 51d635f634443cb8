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
