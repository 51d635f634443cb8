"""Policy test cases for the default set: what a fresh install promises, checked on every change.

The users and resources are made up (`User::"case-alice"`, `Document::"case-doc"`), so no
account is needed and no real one is confused with them.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

ALICE, BOB, ADMIN = 'User::"case-alice"', 'User::"case-bob"', 'User::"case-admin"'
DOC = {"owner_id": "case-alice"}
PUBLIC_BOARD = {"owner_id": "case-alice", "visibility": "public"}
CASES = [
    # name, principal, is_staff, action, resource type, id, attrs, expected, note
    ("anonymous-cannot-publish-to-chat", "anonymous", False, "publish", "Channel", "chat.lobby", {}, "deny",
     "Signed-out visitors never write to chat."),
    ("signed-in-users-read-chat", ALICE, False, "subscribe", "Channel", "chat.lobby", {}, "allow",
     "Everyone signed in may use chat.* (signed-in-chat)."),
    ("owners-edit-their-documents", ALICE, False, "edit", "Document", "case-doc", DOC, "allow",
     "An owner does everything with a document (owner-documents)."),
    ("others-cannot-read-a-private-document", BOB, False, "read", "Document", "case-doc", DOC, "deny",
     "A document is private to its owner unless shared."),
    ("staff-administer-the-platform", ADMIN, True, "administer", "Platform", "webconnect", {}, "allow",
     "Staff may do everything (staff-administer)."),
    ("personal-channels-are-read-by-their-owner", ALICE, False, "subscribe", "Channel", "user.case-alice", {},
     "allow", "A personal channel is used by its owner (personal-channel-owner)."),
    ("others-cannot-read-a-personal-channel", BOB, False, "subscribe", "Channel", "user.case-alice", {}, "deny",
     "Nobody else reads someone's personal channel."),
    ("public-dashboards-are-viewed-by-anyone-signed-in", BOB, False, "view", "Dashboard", "case-board",
     PUBLIC_BOARD, "allow", "dashboard-public."),
    ("anonymous-cannot-view-a-public-dashboard", "anonymous", False, "view", "Dashboard", "case-board",
     PUBLIC_BOARD, "deny", "Public means anyone signed in, not the whole internet."),
]  # fmt: skip


def install(apps: Any, schema_editor: Any) -> None:
    case_model = apps.get_model("policies", "PolicyTestCase")
    for name, principal, is_staff, action, resource_type, resource_id, attrs, expected, note in CASES:
        case_model.objects.get_or_create(
            name=name,
            defaults={
                "principal": principal,
                "is_staff": is_staff,
                "action": action,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "attrs": attrs,
                "expected": expected,
                "note": note,
            },
        )


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("policies", "PolicyTestCase").objects.filter(name__in=[row[0] for row in CASES]).delete()


class Migration(migrations.Migration):
    dependencies = [("policies", "0009_policy_test_cases")]

    operations = [migrations.RunPython(install, uninstall)]
