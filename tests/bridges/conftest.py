from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from bridges.selectors import snapshot_cache_clear
from webconnect.realtime import selectors


@pytest.fixture(autouse=True)
def _defaults(request: pytest.FixtureRequest) -> Iterator[None]:
    """The migrations' namespaces and default policies again after a transactional test's flush."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        from django.apps import apps

        request.getfixturevalue("transactional_db")
        for module in ("webconnect.migrations.0003_default_namespaces", "policies.migrations.0002_default_policies"):
            importlib.import_module(module).install(apps, None)
        from policies import engine

        engine.mark_stale()
    selectors.namespace_cache_clear()
    snapshot_cache_clear()
    yield
    selectors.namespace_cache_clear()
    snapshot_cache_clear()
