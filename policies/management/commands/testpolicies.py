from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies import impact, policytests


class Command(BaseCommand):
    help = "Run every enabled policy test case against the current policy set; exit 1 if one fails (for pipelines)."

    def handle(self, *args: Any, **options: Any) -> None:
        current = impact.PolicySet.current()
        results = policytests.run_cases(current.sources, current.links)
        failed = [result for result in results if not result.passed]
        for result in results:
            self.stdout.write(("ok    " if result.passed else "FAIL  ") + result.case.name)
        for result in failed:
            self.stderr.write(result.message())
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} policy tests failed")
        self.stdout.write(f"{len(results)} policy tests passed")
