"""Import/export of every policy as one file, validated as a whole."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from policies.models import AccessPolicy, AccessPolicyVersion, RateLimitPolicy
from policies.selectors import policy_version
from policies.services import policies_export, policies_import, share_grant
from webconnect.authorization import authorize
from webconnect.identity import Principal, Resource

pytestmark = pytest.mark.django_db


def exported_with(**changes: Any) -> dict[str, Any]:
    data = policies_export()
    data["access_policies"].extend(changes.get("access", []))
    data["rate_limit_policies"].extend(changes.get("rate", []))
    return data


def test_an_export_imports_back_unchanged() -> None:
    data = policies_export()
    assert data["format"] == "webconnect-policies" and data["schema_version"] == 2
    assert {p["name"] for p in data["access_policies"]} >= {"staff-administer", "share-viewer"}
    versions = AccessPolicyVersion.objects.count()
    result = policies_import(content=json.dumps(data), actor=None)
    assert result.access_policies == len(data["access_policies"]) and result.removed == 0
    assert AccessPolicyVersion.objects.count() == versions  # nothing changed, no new versions
    assert policies_export() == data


def test_a_yaml_file_with_new_policies_is_imported(alice: Any) -> None:
    data = exported_with(
        access=[
            {
                "name": "no-ops",
                "text": 'forbid(principal, action, resource is Channel)\nwhen { resource.namespace == "ops" };',
            }
        ],
        rate=[{"name": "publish", "scope": "user", "actions": "publish", "limits": "20/second;600/minute"}],
    )
    version = policy_version()
    policies_import(content=yaml.safe_dump(data), actor=alice)
    assert AccessPolicy.objects.filter(name="no-ops").exists()
    assert RateLimitPolicy.objects.get(name="publish").strategy == "sliding"
    assert AccessPolicyVersion.objects.get(policy_name="no-ops").change == "imported"
    assert policy_version() > version


def test_one_bad_policy_imports_nothing_and_every_error_is_listed(alice: Any) -> None:
    data = exported_with(
        access=[
            {"name": "good-one", "text": "permit(principal, action, resource);"},
            {"name": "syntax", "text": "permit(principal action, resource);"},
            {"name": "unknown-attr", "text": "permit(principal, action, resource is Channel) when { resource.nope };"},
            {"name": "good-one", "text": "forbid(principal, action, resource);"},
        ],
        rate=[{"name": "bad-rate", "scope": "user", "limits": "ten per second"}],
    )
    before = (AccessPolicy.objects.count(), RateLimitPolicy.objects.count(), policy_version())
    with pytest.raises(ValidationError) as caught:
        policies_import(content=json.dumps(data), actor=alice)
    messages = caught.value.messages
    assert any(m.startswith("syntax: syntax error") for m in messages)
    assert any(m.startswith("unknown-attr: ") and "nope" in m for m in messages)
    assert any(m.startswith("good-one: another policy already has this name") for m in messages)
    assert any(m.startswith("bad-rate: limits:") and "not a limit" in m for m in messages)
    assert (AccessPolicy.objects.count(), RateLimitPolicy.objects.count(), policy_version()) == before
    assert not AccessPolicy.objects.filter(name="good-one").exists()


def test_a_file_that_drops_a_template_with_shares_is_refused(alice: Any, bob: Any) -> None:
    share_grant(resource_type="Document", resource_id=1, role="viewer", user=bob, actor=alice)
    data = policies_export()
    data["access_policies"] = [p for p in data["access_policies"] if p["name"] != "share-viewer"]
    with pytest.raises(ValidationError, match="share-viewer: shares are linked"):
        policies_import(content=json.dumps(data), actor=alice)
    assert authorize(Principal(bob), "read", Resource("Document", "1", {"owner_id": alice.pk}))


def test_not_a_policies_file() -> None:
    with pytest.raises(ValidationError, match="not a policies file"):
        policies_import(content="[1, 2]", actor=None)
    with pytest.raises(ValidationError, match="neither JSON"):
        policies_import(content="{not: [valid", actor=None)


def test_the_admin_exports_and_imports(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.get("/admin/policies/accesspolicy/export/")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    data["access_policies"].append({"name": "broken", "text": "permit(principal, action resource);"})
    upload = SimpleUploadedFile("policies.json", json.dumps(data).encode(), content_type="application/json")
    response = client.post("/admin/policies/accesspolicy/import/", {"file": upload})
    body = response.content.decode()
    assert response.status_code == 200 and "Nothing was imported" in body and "broken: syntax error" in body
    data["access_policies"].pop()
    upload = SimpleUploadedFile("policies.json", json.dumps(data).encode(), content_type="application/json")
    response = client.post("/admin/policies/accesspolicy/import/", {"file": upload})
    assert response.status_code == 302


def test_the_management_commands_round_trip(tmp_path: Any) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("exportpolicies", stdout=out)
    path = tmp_path / "policies.json"
    path.write_text(out.getvalue())
    out = StringIO()
    call_command("importpolicies", str(path), stdout=out)
    data = json.loads(path.read_text())
    # Everything exported comes back (the shipped set grows as apps ship rules, so no fixed count).
    assert f"imported {len(data['access_policies'])} access" in out.getvalue()
    data["access_policies"].append({"name": "bad", "text": ""})
    path.write_text(json.dumps(data))
    with pytest.raises(CommandError, match="bad: the policy text is empty"):
        call_command("importpolicies", str(path))


def test_a_share_grant_must_link_a_template(alice: Any, admin_user: Any) -> None:
    from collab.services import document_create

    client = Client()
    client.force_login(admin_user)
    plain = AccessPolicy.objects.get(name="signed-in-chat")
    template = AccessPolicy.objects.get(name="share-viewer")
    document = document_create(owner=admin_user, title="Shared from the admin")
    form = {"user": str(alice.pk), "resource_type": "Document", "resource_id": str(document.pk)}
    # Only templates are offered (a plain policy is not a valid choice).
    response = client.post("/admin/policies/sharegrant/add/", {**form, "template": plain.pk})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    response = client.post("/admin/policies/sharegrant/add/", {**form, "template": template.pk})
    assert response.status_code == 302
    assert authorize(Principal(alice), "read", Resource("Document", str(document.pk)))
