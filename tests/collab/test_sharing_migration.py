"""The data migration: DocumentShare rows become ShareGrants (collab 0002), and back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from policies import engine
from policies.models import ShareGrant
from policies.selectors import policy_version
from webconnect.authorization import Principal, Resource, authorize

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE = [("collab", "0001_initial")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    engine.clear_caches()
    return MigrationExecutor(connection).loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return [node for node in executor.loader.graph.leaf_nodes() if node[0] == "collab"]


@pytest.fixture
def before_the_migration() -> Iterator[Any]:
    old_apps = migrate(BEFORE)
    try:
        yield old_apps
    finally:
        migrate(latest())


def test_document_shares_become_share_grants_and_keep_their_rights(
    before_the_migration: Any, alice: Any, bob: Any, make_user: Any
) -> None:
    carol = make_user("carol")
    ops = Group.objects.create(name="ops")
    carol.groups.add(ops)
    Document = before_the_migration.get_model("collab", "Document")
    DocumentShare = before_the_migration.get_model("collab", "DocumentShare")
    plan = Document.objects.create(owner_id=alice.pk, title="Plan")
    notes = Document.objects.create(owner_id=alice.pk, title="Notes")
    viewer = DocumentShare.objects.create(document=plan, user_id=bob.pk, role="viewer")
    DocumentShare.objects.create(document=plan, group_id=ops.pk, role="editor")
    DocumentShare.objects.create(document=notes, user_id=bob.pk, role="editor")
    DocumentShare.objects.create(document=notes, user_id=alice.pk, role="viewer")  # the owner: nothing to migrate
    version = policy_version()

    migrate(latest())

    grants = {
        (g.resource_id, g.principal_type, g.principal_id): g for g in ShareGrant.objects.select_related("template")
    }
    assert set(grants) == {
        (str(plan.pk), "User", str(bob.pk)),
        (str(plan.pk), "Role", "ops"),
        (str(notes.pk), "User", str(bob.pk)),
    }
    assert grants[(str(plan.pk), "User", str(bob.pk))].template.name == "share-viewer"
    assert grants[(str(plan.pk), "User", str(bob.pk))].user_id == bob.pk
    assert grants[(str(plan.pk), "User", str(bob.pk))].created_at == viewer.created_at
    assert grants[(str(plan.pk), "Role", "ops")].template.name == "share-editor"
    assert grants[(str(plan.pk), "Role", "ops")].group_id == ops.pk
    assert policy_version() > version

    def may(user: Any, action: str, document: Any) -> bool:
        return bool(authorize(Principal(user), action, Resource("Document", str(document.pk), {"owner_id": alice.pk})))

    assert may(bob, "read", plan) and not may(bob, "edit", plan)
    assert may(carol, "edit", plan) and not may(carol, "read", notes)
    assert may(bob, "edit", notes)
    with connection.cursor() as cursor:
        assert "collab_documentshare" not in connection.introspection.table_names(cursor)


def test_the_migration_reverses_into_document_shares(before_the_migration: Any, alice: Any, bob: Any) -> None:
    from policies.services import share_grant

    Document = before_the_migration.get_model("collab", "Document")
    plan = Document.objects.create(owner_id=alice.pk, title="Plan")
    migrate(latest())
    share_grant(resource_type="Document", resource_id=plan.pk, role="editor", user=bob)
    share_grant(resource_type="Dashboard", resource_id=77, role="viewer", user=bob)  # not a document: stays

    old_apps = migrate(BEFORE)
    DocumentShare = old_apps.get_model("collab", "DocumentShare")
    assert list(DocumentShare.objects.values_list("document_id", "user_id", "role")) == [(plan.pk, bob.pk, "editor")]
    assert list(ShareGrant.objects.values_list("resource_type", flat=True)) == ["Dashboard"]
