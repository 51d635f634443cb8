from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from policies.services import policies_export


class Command(BaseCommand):
    help = "Print every access and rate-limit policy as one JSON document (for version control)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(policies_export(), indent=2))
