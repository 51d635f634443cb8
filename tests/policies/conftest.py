from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def _close_worker_thread_connections(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Async tests reach the database from executor threads (sync_to_async), whose
    connections outlive the test; on PostgreSQL they would stop the test database
    from being dropped at the end of the session."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
