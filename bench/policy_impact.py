"""The impact preview of a policy change: how long it takes over 1,000 users x 1,000 resources.

    .venv/bin/python bench/policy_impact.py                 # 1,000 users, 1,000 resources
    .venv/bin/python bench/policy_impact.py --users 2000 --resources 2000

Runs on a fresh SQLite database in a temporary directory (migrated: the default
policy set), with N users (a tenth in a group "ops"), and resources: N/4
documents, N/4 dashboards, N/4 chat.* channels with history and N/4 ops.*
channels (in this process's memory history), plus every user's personal channel
(the impact counts those too). Each case is one change, computed with
`policies.impact.compute_impact` as the admin does before a save; it prints the
requests evaluated per set, the changed decisions, whether it sampled and the
time. A case reaching every user and every channel shows the sampling budget
(POLICY_IMPACT_MAX_DECISIONS) at work.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["WEBCONNECT_DATA_DIR"] = tempfile.mkdtemp(prefix="webconnect-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ["KERNEL_BACKGROUND_TASKS"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--resources", type=int, default=1000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group

    from collab.models import Document
    from dashboards.models import Dashboard
    from policies import cedar, impact
    from webconnect.models import Namespace
    from webconnect.realtime.hub import get_hub

    for name in ("chat", "ops", "user"):
        Namespace.objects.get_or_create(name=name)
    User = get_user_model()
    unusable = make_password(None)
    User.objects.bulk_create([User(username=f"user{n}", password=unusable) for n in range(args.users)])
    users = list(User.objects.order_by("pk"))
    ops = Group.objects.create(name="ops")
    ops.user_set.add(*users[::10])
    quarter = args.resources // 4
    Document.objects.bulk_create([Document(title=f"d{n}", owner=users[n % len(users)]) for n in range(quarter)])
    Dashboard.objects.bulk_create([Dashboard(title=f"b{n}", owner=users[n % len(users)]) for n in range(quarter)])
    history = get_hub().history
    for n in range(quarter):
        history._log(f"chat.room{n}", 3600)
        history._log(f"ops.feed{n}", 3600)

    principals, resources = impact.entity_store()
    print(
        f"{len(principals)} principals (users + anonymous), {len(resources)} resources "
        f"({args.resources} + {len(users)} personal channels)"
    )
    current = impact.PolicySet.current()

    def add(name: str, text: str) -> impact.PolicySet:
        return impact.PolicySet((*current.sources, cedar.PolicySource(name, text)), current.links)

    def without(name: str) -> impact.PolicySet:
        return impact.PolicySet(tuple(s for s in current.sources if s.name != name), current.links)

    cases = [
        (
            "permit ops group on ops.* (subscribe)",
            add(
                "ops-sub",
                'permit(principal in Role::"ops", action == Action::"subscribe", resource is Channel) '
                'when { resource.namespace == "ops" };',
            ),
            None,
        ),
        (
            "forbid one user everything",
            add("ban", f'forbid(principal == User::"{users[0].pk}", action, resource);'),
            None,
        ),
        ("disable owner-documents", without("owner-documents"), None),
        (
            "forbid every channel to everyone (budget)",
            add("no-channels", "forbid(principal, action, resource is Channel);"),
            None,
        ),
    ]
    for label, proposed, budget in cases:
        start = time.perf_counter()
        result = impact.compute_impact(
            current, proposed, principals=principals, resources=resources, live=[], max_decisions=budget
        )
        took = time.perf_counter() - start
        rate = result.decisions * 2 / took if took else 0
        print(
            f"{label:<46} requests/set {result.decisions:>9,}  changed {result.gains + result.loses:>9,}  "
            f"sampled {'yes' if result.sampled else 'no ':<3} ({result.principals}/{result.principals_total} "
            f"principals)  {took:7.2f} s  ({rate:,.0f} decisions/s)"
        )


if __name__ == "__main__":
    main()
