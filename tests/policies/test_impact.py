"""The impact of a policy change: the decisions that differ, over the real users and resources."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from collab.models import Document
from policies import cedar, impact
from policies.models import AccessPolicy
from webconnect.identity import principal_for_user
from webconnect.models import Namespace

pytestmark = pytest.mark.django_db

OPS_FORBID = 'forbid(principal, action, resource is Channel) when { resource.namespace == "chat" };'


def test_a_forbid_on_chat_loses_each_signed_in_user_the_chat_channels_with_history(make_user: Any) -> None:
    Namespace.objects.get_or_create(name="chat")
    bob, carol = make_user("bob"), make_user("carol")
    current = impact.PolicySet.current()
    proposed = impact.PolicySet((*current.sources, cedar.PolicySource("no-chat", OPS_FORBID)), current.links)
    live = [("chat.lobby", principal_for_user(bob))]

    result = impact.compute_impact(current, proposed, live=live)

    assert result.changed_policies == ["no-chat"]
    assert result.gains == 0 and result.loses > 0
    [group] = [g for g in result.groups if g.resource_kind == "Channel" and g.principal_kind == "User"]
    assert group.change == "loses"
    assert {f'bob (User::"{bob.pk}")', f'carol (User::"{carol.pk}")'} <= group.principals
    assert any(e.resource == 'Channel::"chat.lobby"' and e.action == "subscribe" for e in group.examples)
    assert [vars(c) for c in result.live_ending] == [
        {"principal": f'bob (User::"{bob.pk}")', "action": "subscribe", "resource": 'Channel::"chat.lobby"'}
    ]
    assert not result.sampled
    summary = result.summary()
    assert summary["live_subscriptions_ending"] == 1 and summary["changed_policies"] == ["no-chat"]


def test_a_permit_for_a_group_gains_only_its_members_the_documents(make_user: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    Group.objects.create(name="auditors").user_set.add(bob)
    doc = Document.objects.create(title="Plan", owner=alice)
    text = 'permit(principal in Role::"auditors", action == Action::"read", resource is Document);'
    current = impact.PolicySet.current()
    proposed = impact.PolicySet((*current.sources, cedar.PolicySource("auditors-read", text)), current.links)

    result = impact.compute_impact(current, proposed, live=[])

    assert [(g.change, g.principal_kind, g.resource_kind, g.count) for g in result.groups] == [
        ("gains", "User", "Document", 1)
    ]
    assert [vars(e) for e in result.groups[0].examples] == [
        {"principal": f'bob (User::"{bob.pk}")', "action": "read", "resource": f'Document::"{doc.pk}"'}
    ]
    # Only the requests the new policy's head reaches were evaluated: bob's read of the one document.
    assert result.decisions == 1


def test_an_unchanged_set_changes_nothing(make_user: Any) -> None:
    make_user("bob")
    current = impact.PolicySet.current()
    result = impact.compute_impact(current, current, live=[])
    assert result.empty and result.changed_policies == [] and result.decisions == 0


def test_past_the_budget_it_samples_and_says_so(make_user: Any) -> None:
    Namespace.objects.get_or_create(name="user")
    for n in range(30):
        make_user(f"u{n}")
    policy = AccessPolicy.objects.get(name="personal-channel-owner")
    proposed = impact.proposed_with_edit(name=policy.name, text=policy.text, enabled=False, pk=policy.pk)

    result = impact.compute_impact(impact.PolicySet.current(), proposed, live=[], max_decisions=1000)

    assert result.sampled and result.decisions <= 1000
    assert result.principals < result.principals_total == 31
    assert "sampled:" in result.sampling_note() and f"of {result.principals_total} principals" in result.sampling_note()
    assert result.loses > 0  # the sampled owners lose their own personal channels
