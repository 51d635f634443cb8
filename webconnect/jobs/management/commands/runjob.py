"""Run a job now: `python manage.py runjob prune_audit --dry-run`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webconnect.jobs.models import JobRun
from webconnect.jobs.registry import JOBS
from webconnect.jobs.services import JobLocked, job_run
from webconnect.jobs.tasks import run_job


class Command(BaseCommand):
    help = "Run a job now in this process (or queue it with --queue). Without a name, list the jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job", nargs="?")
        parser.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="job parameter, e.g. --param since=2026-11-01 (export_audit)",
        )
        parser.add_argument("--queue", action="store_true", help="hand it to a Celery worker instead")

    def handle(self, *args: Any, job: str | None, dry_run: bool, param: list[str], queue: bool, **options: Any) -> None:
        if job is None:
            for name, spec in sorted(JOBS.items()):
                last = JobRun.objects.filter(job=name).first()
                state = f"last: {last.status} {last.started_at:%Y-%m-%d %H:%M}" if last else "never run"
                self.stdout.write(f"{name:22} {spec.schedule:16} {state:34} {spec.description}")
            return
        if job not in JOBS:
            raise CommandError(f"Unknown job {job!r}. Known: {', '.join(sorted(JOBS))}")
        params = {}
        for item in param:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param takes KEY=VALUE, got {item!r}")
            params[key] = value
        if queue:
            run_job.delay(job, dry_run=dry_run, params=params)
            self.stdout.write(f"Queued {job}.")
            return
        try:
            run = job_run(name=job, dry_run=dry_run, params=params)
        except JobLocked:
            raise CommandError(f"{job} is running in another worker right now; try again when it finishes.") from None
        self.stdout.write(
            json.dumps(
                {
                    "job": job,
                    "status": run.status,
                    "dry_run": run.dry_run,
                    "affected": run.items_affected,
                    "failed": run.items_failed,
                    "details": run.details,
                },
                indent=2,
                default=str,
            )
        )
        if run.status == JobRun.Status.FAILED:
            raise CommandError(f"{job} failed: {run.error.strip().splitlines()[-1] if run.error else ''}")
