"""The default policy set: a fresh install is secure (default deny) and usable.

These reproduce the platform's built-in rules: staff administer everything;
owners do everything with their documents and dashboards; users a document or
dashboard is shared with (attrs editor_ids / viewer_ids, or a share template
link) per their grant; public dashboards are viewable by anyone signed in;
everyone signed in may connect and use the chat.* namespace; personal channels
user.<id> are read by their owner and written by anyone signed in; a channel
marked anonymous_read may be read without signing in. Everything else is denied.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

DOC_ALL = 'Action::"read", Action::"edit", Action::"share", Action::"delete", Action::"view"'
CHANNEL_USE = 'Action::"subscribe", Action::"publish", Action::"presence", Action::"history"'

DEFAULTS = [
    (
        "staff-administer",
        "Staff may do everything.",
        "permit(principal is User, action, resource)\nwhen { principal.is_staff };",
    ),
    (
        "owner-documents",
        "Owners do everything with their documents.",
        f"permit(principal is User, action in [{DOC_ALL}], resource is Document)\n"
        "when { resource has owner && resource.owner == principal };",
    ),
    (
        "owner-dashboards",
        "Owners do everything with their dashboards.",
        f"permit(principal is User, action in [{DOC_ALL}], resource is Dashboard)\n"
        "when { resource has owner && resource.owner == principal };",
    ),
    (
        "shared-viewer-documents",
        "Viewers and editors of a document may read it.",
        'permit(principal is User, action in [Action::"read", Action::"view"], resource is Document)\n'
        "when { principal in resource.viewers || principal in resource.editors };",
    ),
    (
        "shared-editor-documents",
        "Editors of a document may edit it.",
        'permit(principal is User, action == Action::"edit", resource is Document)\n'
        "when { principal in resource.editors };",
    ),
    (
        "shared-viewer-dashboards",
        "Viewers and editors of a dashboard may view it.",
        'permit(principal is User, action in [Action::"read", Action::"view"], resource is Dashboard)\n'
        "when { principal in resource.viewers || principal in resource.editors };",
    ),
    (
        "shared-editor-dashboards",
        "Editors of a dashboard may edit it.",
        'permit(principal is User, action == Action::"edit", resource is Dashboard)\n'
        "when { principal in resource.editors };",
    ),
    (
        "dashboard-public",
        "Anyone signed in may view a public dashboard.",
        'permit(principal is User, action == Action::"view", resource is Dashboard)\n'
        'when { resource.visibility == "public" };',
    ),
    (
        "signed-in-connect",
        "Anyone signed in may open a real-time connection.",
        'permit(principal is User, action == Action::"connect", resource);',
    ),
    (
        "signed-in-chat",
        "Anyone signed in may use the chat.* namespace.",
        f"permit(principal is User, action in [{CHANNEL_USE}], resource is Channel)\n"
        'when { resource.namespace == "chat" };',
    ),
    (
        "personal-channel-owner",
        "A personal channel user.<id> is used by its owner.",
        f"permit(principal is User, action in [{CHANNEL_USE}], resource is Channel)\n"
        'when { resource.namespace == "user" && resource has owner && resource.owner == principal };',
    ),
    (
        "personal-channel-publish",
        "Anyone signed in may write to a personal channel.",
        'permit(principal is User, action == Action::"publish", resource is Channel)\n'
        'when { resource.namespace == "user" };',
    ),
    (
        "anonymous-read",
        "Channels marked anonymous_read may be read without signing in.",
        'permit(principal, action in [Action::"connect", Action::"subscribe", Action::"history"], resource is Channel)\n'
        "when { resource.anonymous_read };",
    ),
    (
        "share-viewer",
        "Template: a share granting read/view of one document or dashboard to a user or role.",
        'permit(principal in ?principal, action in [Action::"read", Action::"view"], resource == ?resource);',
    ),
    (
        "share-editor",
        "Template: a share granting read/view/edit of one document or dashboard to a user or role.",
        'permit(principal in ?principal, action in [Action::"read", Action::"view", Action::"edit"], resource == ?resource);',
    ),
]


def install(apps: Any, schema_editor: Any) -> None:
    AccessPolicy = apps.get_model("policies", "AccessPolicy")
    AccessPolicyVersion = apps.get_model("policies", "AccessPolicyVersion")
    PolicyState = apps.get_model("policies", "PolicyState")
    for name, description, text in DEFAULTS:
        policy, created = AccessPolicy.objects.get_or_create(
            name=name, defaults={"description": description, "text": text, "is_template": "?principal" in text}
        )
        if created:
            AccessPolicyVersion.objects.create(
                policy=policy,
                policy_name=name,
                number=1,
                change="created",
                description=description,
                enabled=True,
                text=text,
                diff="(installed by migration)",
            )
    state, _ = PolicyState.objects.get_or_create(pk=1)
    state.version += 1
    state.save()


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("policies", "AccessPolicy").objects.filter(name__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("policies", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
