"""Verify the audit chain against its signed checkpoints (the database, or a copied export offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance import signing
from compliance.checkpoints import public_key_text
from compliance.verification import verify_database, verify_export


class Command(BaseCommand):
    help = (
        "Verify the audit chain and its signed checkpoints. --export DIR checks a copied export "
        "(manifest, files, checkpoints) without any database access."
    )
    # Offline verification must not need the database (system checks would read it).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", type=Path, help="a directory holding exports (AUDIT_EXPORT_DIR or a copy)")
        parser.add_argument("--checkpoints", type=Path, help="a shipped checkpoint file (AUDIT_CHECKPOINT_FILE)")
        parser.add_argument(
            "--public-key",
            default="",
            help="the checkpoint signing public key (urlsafe base64); default: derived from AUDIT_SIGNING_KEY",
        )

    def handle(
        self, *args: Any, export: Path | None, checkpoints: Path | None, public_key: str, **options: Any
    ) -> None:
        text = public_key or (public_key_text() if settings.AUDIT_SIGNING_KEY else None)
        if not text:
            raise CommandError("no public key: pass --public-key or set AUDIT_SIGNING_KEY")
        try:
            public = signing.public_key(text)
        except ValueError as exc:
            raise CommandError(f"--public-key is not an Ed25519 public key: {exc}") from None
        if export is not None:
            if not export.is_dir():
                raise CommandError(f"{export} is not a directory")
            report = verify_export(export, public=public)
        else:
            report = verify_database(public=public, shipped=checkpoints)
        for problem in report.problems:
            self.stderr.write(f"FAIL {problem}")
        summary = f"{report.checked_events} events, {report.checked_checkpoints} signed checkpoints checked"
        if not report.ok:
            raise CommandError(f"audit trail verification failed ({len(report.problems)} problems; {summary})")
        self.stdout.write(f"ok: {summary} (key {signing.key_fingerprint(text)})")
