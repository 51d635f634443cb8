"""Sharing documents: the REST endpoints, the directory the picker searches, the admin, and what a share follows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse

from collab import services
from collab.models import Document
from policies.models import ShareGrant
from policies.selectors import policy_version
from policies.services import share_grant
from webconnect.authorization import Principal, Resource, authorize
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def rights(user: Any, document: Document) -> tuple[bool, bool]:
    from collab.selectors import document_rights

    return document_rights(Principal(user), document)


@pytest.fixture
def carol(make_user: Callable[..., Any]) -> Any:
    return make_user("carol")


@pytest.fixture
def document(alice: Any) -> Document:
    return services.document_create(owner=alice, title="Plan")


def shares_url(document: Document) -> str:
    return f"/api/documents/{document.pk}/shares/"


# --- REST: /api/documents/{id}/shares/ -------------------------------------------------


def test_the_owner_shares_with_a_user_changes_the_role_and_revokes(alice: Any, bob: Any, document: Document) -> None:
    client = client_for(alice)
    assert client.get(shares_url(document)).json() == []
    assert rights(bob, document) == (False, False)
    before = policy_version()

    response = client.post(shares_url(document), {"user": "bob", "role": "viewer"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    share = response.json()
    assert share["type"] == "user" and share["name"] == "bob" and share["role"] == "viewer"
    assert share["policy_id"] == f"share:{share['id']}" and share["created_by"] == "alice"
    assert rights(bob, document) == (True, False)
    assert policy_version() > before
    grant = ShareGrant.objects.get()
    assert (grant.template.name, grant.principal_type, grant.principal_id) == ("share-viewer", "User", str(bob.pk))
    assert (grant.resource_type, grant.resource_id) == ("Document", str(document.pk))

    # Another role replaces the first: one share per user per document.
    response = client.post(shares_url(document), {"user": "bob", "role": "editor"}, content_type="application/json")
    assert response.status_code == 201 and response.json()["role"] == "editor"
    assert [s["role"] for s in client.get(shares_url(document)).json()] == ["editor"]
    assert rights(bob, document) == (True, True)

    editor_id = client.get(shares_url(document)).json()[0]["id"]
    assert client.delete(f"{shares_url(document)}{editor_id}/").status_code == 204
    assert rights(bob, document) == (False, False)
    assert client.delete(f"{shares_url(document)}{editor_id}/").status_code == 404
    assert client.get(shares_url(document)).json() == []


def test_sharing_with_a_group_reaches_its_members_only_and_revokes_by_name(
    alice: Any, bob: Any, carol: Any, document: Document
) -> None:
    writers = Group.objects.create(name="writers")
    bob.groups.add(writers)
    client = client_for(alice)
    response = client.post(
        shares_url(document), {"group": "writers", "role": "editor"}, content_type="application/json"
    )
    assert response.status_code == 201 and response.json()["type"] == "group"
    assert rights(bob, document) == (True, True)
    assert rights(carol, document) == (False, False)
    # The member finds it under "Shared with me".
    assert "Plan" in client_for(bob).get(reverse("collab:list")).content.decode()
    assert client_for(bob).get(f"/api/documents/{document.pk}/").json()["can_edit"] is True

    assert client.delete(f"{shares_url(document)}?group=writers").status_code == 204
    assert rights(bob, document) == (False, False)
    assert client.delete(f"{shares_url(document)}?group=writers").status_code == 404
    assert client.delete(f"{shares_url(document)}?user=nobody").status_code == 404
    assert client.delete(shares_url(document)).status_code == 400


def test_bad_shares_are_refused_with_a_message(alice: Any, bob: Any, document: Document) -> None:
    client = client_for(alice)

    def post(body: dict[str, Any]) -> Any:
        return client.post(shares_url(document), body, content_type="application/json")

    unknown = post({"user": "nobody", "role": "viewer"})
    assert unknown.status_code == 400 and "there is no user named 'nobody'" in str(unknown.json())
    assert "no group named" in str(post({"group": "ghosts", "role": "viewer"}).json())
    owner = post({"user": "alice", "role": "editor"})
    assert owner.status_code == 400 and "owns this document" in str(owner.json())
    assert post({"user": "bob", "group": "x", "role": "viewer"}).status_code == 400
    assert post({"role": "viewer"}).status_code == 400
    assert post({"user": "bob", "role": "owner"}).status_code == 400
    bob.is_active = False
    bob.save()
    assert post({"user": "bob", "role": "viewer"}).status_code == 400
    assert not ShareGrant.objects.exists()


def test_only_those_with_the_share_right_see_or_change_shares(
    alice: Any, bob: Any, carol: Any, document: Document, admin_user: Any
) -> None:
    share_grant(resource_type="Document", resource_id=document.pk, role="editor", user=bob, actor=alice)
    # An editor reads and edits but does not share (the default policies give that to owners and staff).
    assert client_for(bob).get(shares_url(document)).status_code == 403
    denied = client_for(bob).post(
        shares_url(document), {"user": "carol", "role": "viewer"}, content_type="application/json"
    )
    assert denied.status_code == 403
    # An outsider is not told that the document exists.
    assert client_for(carol).get(shares_url(document)).status_code == 404
    assert client_for(carol).delete(f"{shares_url(document)}?user=bob").status_code == 404
    assert Client().get(shares_url(document)).status_code in {401, 403}
    assert client_for(admin_user).get(shares_url(document)).status_code == 200
    # The editor page offers the dialog to the owner only.
    assert b"data-share-open" in client_for(alice).get(reverse("collab:editor", args=[document.pk])).content
    assert b"data-share-open" not in client_for(bob).get(reverse("collab:editor", args=[document.pk])).content
    assert ShareGrant.objects.count() == 1


def test_tokens_need_docs_write(alice: Any, document: Document, mint_token: Callable[..., str]) -> None:
    client = Client()
    read_only = mint_token("alice", "docs:read")
    response = client.get(shares_url(document), **bearer(read_only))
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
    writer = mint_token("alice", "docs:write")
    assert client.get(shares_url(document), **bearer(writer)).status_code == 200
    created = client.post(
        shares_url(document), {"user": "root", "role": "viewer"}, content_type="application/json", **bearer(writer)
    )
    assert created.status_code == 400  # no user root here: the token got past the scope check


def test_a_session_post_without_the_csrf_token_is_refused(alice: Any, bob: Any, document: Document) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(shares_url(document), {"user": "bob", "role": "viewer"}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not ShareGrant.objects.exists()


def test_sharing_and_revoking_are_audited(alice: Any, bob: Any, document: Document) -> None:
    client = client_for(alice)
    client.post(shares_url(document), {"user": "bob", "role": "viewer"}, content_type="application/json")
    client.post(shares_url(document), {"user": "bob", "role": "editor"}, content_type="application/json")
    client.delete(f"{shares_url(document)}?user=bob")
    events = list(AuditEvent.objects.filter(action__startswith="share.").order_by("id"))
    assert [e.action for e in events] == ["share.granted", "share.granted", "share.revoked"]
    assert {e.actor_name for e in events} == {"alice"}
    assert {e.target for e in events} == {f"Document::{document.pk}"}
    assert events[0].details["role"] == "viewer" and events[0].details["name"] == "bob"
    assert events[1].details["role"] == "editor" and events[1].details["replaced"] == ["viewer"]
    assert events[2].details["principal"] == f"User::{bob.pk}"


def test_granting_the_same_role_again_changes_nothing(alice: Any, bob: Any, document: Document) -> None:
    first = share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob, actor=alice)
    version = policy_version()
    again = share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob, actor=alice)
    assert again.pk == first.pk and policy_version() == version
    assert AuditEvent.objects.filter(action="share.granted").count() == 1


def test_the_old_share_page_opens_the_dialog_on_the_document(alice: Any, document: Document) -> None:
    response = client_for(alice).get(reverse("collab:share", args=[document.pk]))
    assert response.status_code == 302 and response["Location"] == f"/docs/{document.pk}/#share"


def test_the_share_endpoints_are_in_the_openapi_schema(settings: Any) -> None:
    settings.API_DOCS_PUBLIC = True
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {"get", "post", "delete"} <= set(paths["/api/documents/{document_id}/shares/"])
    assert "delete" in paths["/api/documents/{document_id}/shares/{share_id}/"]
    assert {"get", "post", "delete"} <= set(paths["/api/dashboards/{dashboard_id}/shares/"])
    assert "get" in paths["/api/directory/"]
    assert {"Share", "ShareCreateRequest", "DirectoryResult"} <= set(schema["components"]["schemas"])


# --- What a share follows ------------------------------------------------------------------


def test_deleting_the_document_the_user_or_the_group_deletes_their_shares(
    alice: Any, bob: Any, carol: Any, document: Document
) -> None:
    team = Group.objects.create(name="team")
    other = services.document_create(owner=alice, title="Other")
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob)
    share_grant(resource_type="Document", resource_id=other.pk, role="viewer", user=carol)
    share_grant(resource_type="Document", resource_id=other.pk, role="editor", group=team)
    document_id = document.pk
    services.document_delete(document=document)
    assert list(ShareGrant.objects.values_list("resource_id", flat=True)) == [str(other.pk)] * 2
    assert AuditEvent.objects.filter(action="share.removed_with_resource", target=f"Document::{document_id}").exists()
    carol.delete()
    team.delete()
    assert not ShareGrant.objects.exists()


def test_a_renamed_group_keeps_its_shares(alice: Any, bob: Any, document: Document) -> None:
    team = Group.objects.create(name="team")
    bob.groups.add(team)
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", group=team)
    team.name = "crew"
    team.save()
    assert ShareGrant.objects.get().principal_id == "crew"
    assert rights(bob, document) == (True, False)


def test_a_disabled_share_template_grants_nothing(alice: Any, bob: Any, document: Document) -> None:
    from policies.models import AccessPolicy
    from policies.services import access_policy_save

    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob)
    template = AccessPolicy.objects.get(name="share-viewer")
    template.enabled = False
    access_policy_save(policy=template, actor=None)
    assert rights(bob, document) == (False, False)


# --- The directory: /api/directory/?q= ----------------------------------------------------


def forget_directory_budget(*users: Any) -> None:
    """Earlier tests' searches by a user with the same id count against the same budget."""
    cache.delete_many([f"throttle_directory_{user.pk}" for user in users])


@pytest.fixture
def people(make_user: Callable[..., Any]) -> None:
    bobby = make_user("bobby")
    bobby.first_name, bobby.last_name = "Roberta", "Jones"
    bobby.save()
    make_user("bob")
    make_user("carol")
    make_user("zed-bob")
    gone = make_user("bobsleigh")
    gone.is_active = False
    gone.save()
    Group.objects.create(name="bob-fans")
    Group.objects.create(name="ops")


def test_the_directory_finds_users_and_groups_best_first(alice: Any, people: None) -> None:
    forget_directory_budget(alice)
    client = client_for(alice)
    body = client.get("/api/directory/", {"q": "bob"}).json()
    assert body["query"] == "bob"
    names = [(r["type"], r["name"]) for r in body["results"]]
    # exact, then prefix (users before groups), then anywhere; inactive users never
    assert names == [("user", "bob"), ("user", "bobby"), ("group", "bob-fans"), ("user", "zed-bob")]
    assert body["results"][1]["display_name"] == "Roberta Jones"
    assert all(set(r) == {"type", "id", "name", "display_name"} for r in body["results"])  # no e-mail
    by_name = client.get("/api/directory/", {"q": "rober"}).json()["results"]
    assert [r["name"] for r in by_name] == ["bobby"]
    assert [r["name"] for r in client.get("/api/directory/", {"q": "OP"}).json()["results"]] == ["ops"]
    short = client.get("/api/directory/", {"q": "b"})
    assert short.status_code == 400 and "at least 2" in str(short.json())


def test_the_directory_returns_at_most_ten(alice: Any, make_user: Callable[..., Any]) -> None:
    forget_directory_budget(alice)
    for n in range(14):
        make_user(f"user{n:02d}")
    results = client_for(alice).get("/api/directory/", {"q": "user"}).json()["results"]
    assert len(results) == 10 and results[0]["name"] == "user00"


def test_the_directory_is_for_signed_in_users_and_sharing_tokens(alice: Any, mint_token: Callable[..., str]) -> None:
    forget_directory_budget(alice)
    assert Client().get("/api/directory/", {"q": "al"}).status_code in {401, 403}
    realtime = mint_token("alice", "realtime:read")
    refused = Client().get("/api/directory/", {"q": "al"}, **bearer(realtime))
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    for scope in ("docs:write", "dashboards:write"):
        assert Client().get("/api/directory/", {"q": "al"}, **bearer(mint_token("alice", scope))).status_code == 200


def test_the_directory_is_rate_limited_per_user(alice: Any, bob: Any) -> None:
    forget_directory_budget(alice, bob)
    with override_settings(DIRECTORY_SEARCH_RATE="3/minute"):
        client = client_for(alice)
        assert [client.get("/api/directory/", {"q": "bo"}).status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/api/directory/", {"q": "bo"})
        assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
        assert client_for(bob).get("/api/directory/", {"q": "al"}).status_code == 200  # bob has his own budget
    forget_directory_budget(alice, bob)


# --- The admin ---------------------------------------------------------------------------------


def test_the_admin_lists_shares_and_grants_one_to_a_group(
    admin_user: Any, alice: Any, bob: Any, document: Document
) -> None:
    from policies.models import AccessPolicy

    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob, actor=alice)
    ops = Group.objects.create(name="ops")
    client = client_for(admin_user)
    listing = client.get("/admin/policies/sharegrant/").content.decode()
    assert "Plan" in listing and "bob" in listing and "viewer" in listing
    # The picker for users and groups searches as you type (the admin's autocomplete).
    found = client.get(
        "/admin/autocomplete/",
        {"app_label": "policies", "model_name": "sharegrant", "field_name": "user", "term": "bo"},
    ).json()
    assert [r["text"] for r in found["results"]] == ["bob"]
    add = client.get(f"/admin/policies/sharegrant/add/?resource_type=Document&resource_id={document.pk}")
    assert add.status_code == 200 and f'value="{document.pk}"' in add.content.decode()
    editor = AccessPolicy.objects.get(name="share-editor")
    response = client.post(
        "/admin/policies/sharegrant/add/",
        {"template": editor.pk, "group": ops.pk, "resource_type": "Document", "resource_id": str(document.pk)},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = ShareGrant.objects.get(group=ops)
    assert (grant.principal_type, grant.principal_id, grant.role) == ("Role", "ops", "editor")
    assert AuditEvent.objects.filter(action="share.granted", actor_name="root", target=f"Document::{document.pk}")
    bob.groups.add(ops)
    assert authorize(Principal(bob), "edit", Resource("Document", str(document.pk)))
    # The document's admin page says who it is shared with.
    page = client.get(f"/admin/collab/document/{document.pk}/change/").content.decode()
    assert "group ops" in page and "bob" in page and "2 share(s)" in page


def test_the_admin_refuses_a_share_of_nothing_or_of_a_missing_document(admin_user: Any, alice: Any) -> None:
    from policies.models import AccessPolicy

    viewer = AccessPolicy.objects.get(name="share-viewer")
    client = client_for(admin_user)
    missing = client.post(
        "/admin/policies/sharegrant/add/",
        {"template": viewer.pk, "user": alice.pk, "resource_type": "Document", "resource_id": "999999"},
    )
    assert missing.status_code == 200 and "There is no document with id" in missing.content.decode()
    document = services.document_create(owner=admin_user, title="X")
    nobody = client.post(
        "/admin/policies/sharegrant/add/",
        {"template": viewer.pk, "resource_type": "Document", "resource_id": str(document.pk)},
    )
    assert nobody.status_code == 200 and "exactly one user or one group" in nobody.content.decode()
    assert not ShareGrant.objects.exists()


def test_a_share_is_revoked_not_edited_in_the_admin(admin_user: Any, alice: Any, bob: Any, document: Document) -> None:
    grant = share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob, actor=alice)
    client = client_for(admin_user)
    view = client.get(f"/admin/policies/sharegrant/{grant.pk}/change/").content.decode()
    assert "share:" in view and 'name="_save"' not in view  # read-only
    response = client.post(f"/admin/policies/sharegrant/{grant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ShareGrant.objects.exists()
    assert rights(bob, document) == (False, False)
    revoked = AuditEvent.objects.get(action="share.revoked")
    assert revoked.actor_name == "root" and revoked.details["name"] == "bob"
