"""`manage.py bootstrap` (what `make run` runs): the first administrator once, then how to recover its password."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap", stdout=out)
    return out.getvalue()


def test_the_first_run_creates_the_administrator_and_later_runs_say_how_to_reset_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first = bootstrap()
    assert "Created administrator 'admin'." in first and "with password: " in first
    assert get_user_model().objects.filter(username="admin", is_superuser=True).exists()

    again = bootstrap()
    assert "An administrator already exists" in again
    assert "Lost the password? Set a new one: DEBUG=true .venv/bin/python manage.py changepassword admin" in again
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
