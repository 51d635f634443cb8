"""First-run set-up for `make run`: a sign-in for the newcomer, created once."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the demo administrator once (or from DJANGO_SUPERUSER_* variables)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--demo",
            action="store_true",
            help="Also install the demo dashboard and its `demo` namespace, readable without signing in "
            "(implied by DEBUG; `make run` passes it).",
        )

    def handle(self, *args: Any, demo: bool = False, **options: Any) -> None:
        from dashboards.demo import builtin_dashboards_ensure, ops_dashboard_ensure, producer_user

        if demo or settings.DEBUG:
            # The demo and operations dashboards, once (the demo producer feeds the first).
            builtin_dashboards_ensure(owner=producer_user())
            self.stdout.write("Demo data: the `demo` namespace is readable without signing in.")
        else:
            ops_dashboard_ensure(owner=producer_user())
        users = get_user_model().objects
        admins = list(users.filter(is_superuser=True).order_by("pk").values_list("username", flat=True)[:5])
        if admins:
            self.stdout.write("An administrator already exists; sign in with the credentials printed on first run.")
            self.stdout.write(
                f"  Lost the password? Set a new one: DEBUG=true .venv/bin/python manage.py changepassword {admins[0]}"
                + (f"  (administrators: {', '.join(admins)})" if len(admins) > 1 else "")
            )
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = password is None
        if password is None:
            password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password=password)
        self.stdout.write(self.style.SUCCESS(f"Created administrator {username!r}."))
        if generated:
            self.stdout.write(f"  Sign in as {username} with password: {password}")
            self.stdout.write("  (printed once; change it at /accounts/password_change/)")
