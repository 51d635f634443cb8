"""Mint an OAuth2 access token for a user; prints the token and nothing else."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model, set_token_value

from webconnect.audit import audit_record

CLI_APPLICATION_NAME = "Command-line tokens"


class Command(BaseCommand):
    help = "Print a new OAuth2 access token for USERNAME with the given scopes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--scopes", default="realtime:read", help='space-separated, e.g. "realtime:read docs:read"')
        parser.add_argument("--expires", type=int, default=3600, help="lifetime in seconds (default 3600)")

    def handle(self, *args: Any, username: str, scopes: str, expires: int, **options: Any) -> None:
        requested = scopes.split()
        unknown = sorted(set(requested) - set(settings.OAUTH2_SCOPES))
        if not requested:
            raise CommandError("--scopes must name at least one scope.")
        if unknown:
            raise CommandError(f"Unknown scope(s): {' '.join(unknown)}. Known: {' '.join(settings.OAUTH2_SCOPES)}")
        if expires <= 0:
            raise CommandError("--expires must be a positive number of seconds.")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {username!r}.")
        with transaction.atomic():
            application, _ = get_application_model().objects.get_or_create(
                name=CLI_APPLICATION_NAME,
                defaults={
                    "client_type": "confidential",
                    "authorization_grant_type": "client-credentials",
                    "client_secret": secrets.token_urlsafe(32),
                },
            )
            raw_token = secrets.token_urlsafe(32)
            token = get_access_token_model()(
                user=user,
                application=application,
                expires=timezone.now() + timedelta(seconds=expires),
                scope=" ".join(dict.fromkeys(requested)),
            )
            # Stored hashed (RFC 9700): the raw value exists only in this output.
            set_token_value(token, raw_token)
            token.save()
            audit_record(
                action="token.issued",
                actor=user,
                target=f"access_token:{token.pk}",
                details={"via": "createtoken", "scope": token.scope, "expires_in": expires},
            )
        self.stdout.write(raw_token)
