from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from dashboards.ops import ensure_namespaces
from webconnect.realtime import selectors


@pytest.fixture(autouse=True)
def _namespaces(request: pytest.FixtureRequest) -> Iterator[None]:
    """The demo and sys namespaces (and, after a transactional flush, the migrations' rows)."""
    if request.node.get_closest_marker("django_db"):
        from django.apps import apps

        marker = request.node.get_closest_marker("django_db")
        transactional = bool(marker is not None and marker.kwargs.get("transaction"))
        request.getfixturevalue("transactional_db" if transactional else "db")
        if transactional:
            for module in (
                "webconnect.migrations.0003_default_namespaces",
                "policies.migrations.0002_default_policies",
            ):
                importlib.import_module(module).install(apps, None)
            from policies import engine

            engine.mark_stale()
        ensure_namespaces(demo=True)
    selectors.namespace_cache_clear()
    yield
    selectors.namespace_cache_clear()
