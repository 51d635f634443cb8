from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.services import policies_import


class Command(BaseCommand):
    help = "Replace every policy with those in a JSON or YAML file; all or nothing, every error listed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="a file written by exportpolicies or the admin's export")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            content = Path(options["path"]).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {options['path']}: {exc}") from None
        try:
            result = policies_import(content=content, actor=None)
        except ValidationError as exc:
            raise CommandError("nothing imported:\n" + "\n".join(f"  {m}" for m in exc.messages)) from None
        self.stdout.write(
            f"imported {result.access_policies} access and {result.rate_limit_policies} rate-limit policies "
            f"({result.removed} removed)"
        )
