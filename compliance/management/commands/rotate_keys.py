"""Re-encrypt every stored value under the newest key in ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.rotation import keys_in_use, keys_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt documents, versions, channel history and OAuth client secrets under the newest key "
        "(batched, resumable: safe to kill and run again). --status lists the key ids in use."
    )
    # The point of this command is to run while an old key is still in use.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=settings.JOB_BATCH_SIZE)
        parser.add_argument("--status", action="store_true", help="only list the key ids each store uses")

    def handle(self, *args: Any, batch_size: int, status: bool, **options: Any) -> None:
        if status:
            for store, ids in keys_in_use().items():
                self.stdout.write(f"{store}: {', '.join(ids) or '(empty)'}")
            return
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            result = keys_rotate(batch_size=batch_size)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for store, changed in result.per_store.items():
            self.stdout.write(f"{store}: {changed} re-encrypted")
        self.stdout.write(f"done: {result.changed} values re-encrypted in {result.batches} batches")
