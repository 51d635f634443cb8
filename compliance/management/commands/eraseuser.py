"""Erase a person (a data-subject erasure request): delete or anonymise everything about them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.subjects import subject_erase


class Command(BaseCommand):
    help = (
        "Erase a user: documents they own are deleted (or --transfer-to OTHER), their edits elsewhere lose "
        "their name, their retained messages, presence, tokens and sessions are deleted, their audit events "
        "are pseudonymised under a signed tombstone (the chain still verifies); audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--transfer-to", metavar="OTHER", help="give the documents they own to this user")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def handle(self, *args: Any, username: str, transfer_to: str | None, interactive: bool, **options: Any) -> None:
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        other = None
        if transfer_to is not None:
            other = users.filter(username=transfer_to).first()
            if other is None:
                raise CommandError(f"no user named {transfer_to!r} to transfer the documents to")
            if other.pk == user.pk:
                raise CommandError("--transfer-to must name another user")
        if interactive:
            fate = f"transferred to {transfer_to}" if other else "DELETED"
            answer = input(f"Erase {username}? Documents they own will be {fate}. This cannot be undone. [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                raise CommandError("erasure cancelled")
        result = subject_erase(user=user, transfer_to=other)
        self.stdout.write(
            f"erased {username} as {result.pseudonym}: "
            f"{result.documents_deleted} documents deleted, {result.documents_transferred} transferred, "
            f"{result.edits_anonymised} edits anonymised, {result.messages_deleted} messages and "
            f"{result.presence_deleted} presence entries deleted, {result.tokens_deleted} tokens deleted, "
            f"{result.audit_events_pseudonymised} audit events pseudonymised (tombstone #{result.tombstone_id})"
        )
