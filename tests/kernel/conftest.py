from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def test_database_name(django_db_setup: Any, django_db_blocker: Any) -> str:
    """The name of this run's test database, for server processes the test starts itself."""
    from django.db import connection

    with django_db_blocker.unblock():
        return str(connection.settings_dict["NAME"])


def install_namespaces() -> None:
    """The real-time namespaces come from a data migration; transactional tests flush every table."""
    from django.apps import apps

    with contextlib.suppress(ImportError):
        importlib.import_module("webconnect.migrations.0003_default_namespaces").install(apps, None)


@pytest.fixture(autouse=True)
async def _close_sync_thread_connections() -> AsyncIterator[None]:
    """ORM calls made with sync_to_async run in asgiref's one sync thread, whose connection
    would otherwise stay open and keep the test database from being dropped."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()
