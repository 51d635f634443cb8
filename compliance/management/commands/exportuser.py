"""Write one archive of everything about a person (a data-subject access request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.subjects import subject_export


class Command(BaseCommand):
    help = (
        "Export a user's profile, groups, owned documents (Markdown + JSON), retained channel messages, "
        "presence, token metadata and audit events as one zip (COMPLIANCE_EXPORT_DIR); audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--output-dir", type=Path, help="where to write the archive (default COMPLIANCE_EXPORT_DIR)"
        )

    def handle(self, *args: Any, username: str, output_dir: Path | None, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        self.stdout.write(str(subject_export(user=user, directory=output_dir)))
