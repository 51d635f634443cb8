"""Document shares become policy shares: each DocumentShare row becomes a ShareGrant.

A DocumentShare (user or group, viewer or editor) becomes the template-linked
policy share-viewer or share-editor on Document::"<id>" for User::"<pk>" or
Role::"<group name>", with the share's creation time. The policy version moves,
so every process reloads the policy set. The reverse copies document grants of
those two templates back into DocumentShare rows and deletes them.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations

TEMPLATES = {"viewer": "share-viewer", "editor": "share-editor"}


def _template(apps: Any, name: str) -> Any:
    AccessPolicy = apps.get_model("policies", "AccessPolicy")
    template = AccessPolicy.objects.filter(name=name).first()
    if template is None:
        # Deleted in the admin: put the default back, or the shares would grant nothing.
        defaults = importlib.import_module("policies.migrations.0002_default_policies").DEFAULTS
        _name, description, text = next(row for row in defaults if row[0] == name)
        template = AccessPolicy.objects.create(name=name, description=description, text=text, is_template=True)
        apps.get_model("policies", "AccessPolicyVersion").objects.create(
            policy=template,
            policy_name=name,
            number=(apps.get_model("policies", "AccessPolicyVersion").objects.filter(policy_name=name).count() + 1),
            change="restored",
            description=description,
            enabled=True,
            text=text,
            diff="(restored by migration collab 0002: document shares need it)",
        )
    elif not template.is_template:
        raise RuntimeError(
            f"the access policy {name} is no longer a template (?principal, ?resource): "
            "restore its default text in the admin, then migrate again"
        )
    return template


def _bump_policy_version(apps: Any) -> None:
    PolicyState = apps.get_model("policies", "PolicyState")
    state, _ = PolicyState.objects.get_or_create(pk=1)
    state.version += 1
    state.save()


def forwards(apps: Any, schema_editor: Any) -> None:
    DocumentShare = apps.get_model("collab", "DocumentShare")
    ShareGrant = apps.get_model("policies", "ShareGrant")
    shares = list(DocumentShare.objects.select_related("document", "group").order_by("pk"))
    if not shares:
        return
    templates = {role: _template(apps, name) for role, name in TEMPLATES.items()}
    for share in shares:
        if share.user_id is not None and share.user_id == share.document.owner_id:
            continue  # the owner has every right already
        if share.user_id is not None:
            principal = {"principal_type": "User", "principal_id": str(share.user_id), "user_id": share.user_id}
        else:
            principal = {"principal_type": "Role", "principal_id": share.group.name, "group_id": share.group_id}
        grant, created = ShareGrant.objects.get_or_create(
            template=templates.get(share.role, templates["viewer"]),
            principal_type=principal["principal_type"],
            principal_id=principal["principal_id"],
            resource_type="Document",
            resource_id=str(share.document_id),
            defaults={**principal, "created_by_id": share.document.owner_id},
        )
        if created:
            ShareGrant.objects.filter(pk=grant.pk).update(created_at=share.created_at)
    _bump_policy_version(apps)


def backwards(apps: Any, schema_editor: Any) -> None:
    DocumentShare = apps.get_model("collab", "DocumentShare")
    Document = apps.get_model("collab", "Document")
    ShareGrant = apps.get_model("policies", "ShareGrant")
    roles = {name: role for role, name in TEMPLATES.items()}
    grants = list(
        ShareGrant.objects.filter(resource_type="Document", template__name__in=list(roles)).select_related("template")
    )
    existing = set(Document.objects.filter(pk__in=[int(g.resource_id) for g in grants]).values_list("pk", flat=True))
    for grant in grants:
        document_id = int(grant.resource_id)
        if document_id not in existing:
            continue
        role = roles[grant.template.name]
        share = DocumentShare.objects.filter(document_id=document_id, user_id=grant.user_id, group_id=grant.group_id)
        current = share.first()
        if current is None:
            DocumentShare.objects.create(
                document_id=document_id, user_id=grant.user_id, group_id=grant.group_id, role=role
            )
        elif role == "editor":
            share.update(role=role)
    if grants:
        ShareGrant.objects.filter(pk__in=[g.pk for g in grants]).delete()
        _bump_policy_version(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("collab", "0001_initial"),
        ("policies", "0005_sharegrant_constraints"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
