"""The built-in rules behind `authorize()`: default deny, scopes narrow, owners and shares."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser

from webconnect.authorization import authorize
from webconnect.identity import ConnectionAuth, Principal, Resource

pytestmark = pytest.mark.django_db


def token(*scopes: str) -> ConnectionAuth:
    return ConnectionAuth(method="bearer", scopes=frozenset(scopes))


def test_signed_in_users_may_use_chat_but_nothing_undeclared(alice: Any) -> None:
    me = Principal(alice)
    assert authorize(me, "publish", Resource("Channel", "chat.lobby"))
    assert not authorize(me, "subscribe", Resource("Channel", "ops.secrets"))


def test_a_token_scope_narrows_what_the_user_may_do(alice: Any) -> None:
    reader = Principal(alice, token("realtime:read"))
    assert authorize(reader, "subscribe", Resource("Channel", "chat.lobby"))
    decision = authorize(reader, "publish", Resource("Channel", "chat.lobby"))
    assert not decision and "realtime:write" in decision.reason


def test_personal_channels_are_read_by_their_owner_only(alice: Any, bob: Any) -> None:
    assert authorize(Principal(alice), "subscribe", Resource("Channel", f"user.{alice.pk}"))
    assert not authorize(Principal(bob), "subscribe", Resource("Channel", f"user.{alice.pk}"))
    assert authorize(Principal(bob), "publish", Resource("Channel", f"user.{alice.pk}"))


def test_anonymous_users_are_denied_unless_the_channel_allows_anonymous_read() -> None:
    anonymous = Principal(AnonymousUser(), ConnectionAuth(method="anonymous", scopes=None))
    assert not authorize(anonymous, "subscribe", Resource("Channel", "chat.lobby"))
    assert authorize(anonymous, "subscribe", Resource("Channel", "news.x", {"anonymous_read": True}))
    assert not authorize(anonymous, "publish", Resource("Channel", "news.x", {"anonymous_read": True}))


def test_document_owner_editor_and_viewer(alice: Any, bob: Any, make_user: Any) -> None:
    carol = make_user("carol")
    doc = Resource("Document", "1", {"owner_id": alice.pk, "editor_ids": [bob.pk], "viewer_ids": [carol.pk]})
    assert authorize(Principal(alice), "delete", doc)
    assert authorize(Principal(bob), "edit", doc) and not authorize(Principal(bob), "delete", doc)
    assert authorize(Principal(carol), "read", doc) and not authorize(Principal(carol), "edit", doc)
    assert not authorize(Principal(make_user("dave")), "read", doc)


def test_an_unknown_action_and_a_broken_rule_both_deny(alice: Any) -> None:
    assert not authorize(Principal(alice), "teleport", Resource("Channel", "chat.x"))
    broken = Resource("Document", "1", {"owner_id": alice.pk + 1, "viewer_ids": None})
    decision = authorize(Principal(alice), "read", broken)
    assert not decision and decision.errors
