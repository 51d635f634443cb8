"""Explaining a decision in the simulator: determining policies with their text, or the closest permits."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from policies.simulator import principal_for, simulate

pytestmark = pytest.mark.django_db


def test_an_allow_shows_the_determining_policy_with_its_text(alice: Any) -> None:
    result = simulate(principal=principal_for(username="alice"), action="subscribe", resource_type="Channel",
                      resource_id="chat.lobby")  # fmt: skip
    assert result.decision.allowed and result.explanation is not None
    [policy] = result.explanation.determining
    assert (policy.name, policy.effect) == ("signed-in-chat", "permit")
    assert 'resource.namespace == "chat"' in policy.text
    assert not result.explanation.no_permit_matched


def test_a_deny_nobody_determined_is_no_permit_matched_with_the_closest_permits(alice: Any, bob: Any) -> None:
    # bob's personal channel: personal-channel-owner's head matches alice; its condition (owner) does not.
    result = simulate(principal=principal_for(username="alice"), action="subscribe", resource_type="Channel",
                      resource_id=f"user.{bob.pk}")  # fmt: skip
    assert not result.decision.allowed and result.explanation is not None
    assert result.explanation.no_permit_matched and result.explanation.determining == ()
    names = [policy.name for policy in result.explanation.closest_permits]
    assert "personal-channel-owner" in names and "staff-administer" in names
    assert "personal-channel-publish" not in names  # its action does not match
    assert "owner-documents" not in names  # nor its resource type


def test_a_forbid_is_shown_as_the_determining_policy(admin_user: Any, alice: Any) -> None:
    from policies.models import AccessPolicy
    from policies.services import access_policy_save

    text = 'forbid(principal, action == Action::"publish", resource is Channel) when { resource.name == "chat.quiet" };'
    access_policy_save(policy=AccessPolicy(name="quiet", text=text), actor=None)
    client = Client()
    client.force_login(admin_user)
    body = {"username": "alice", "action": "publish", "resource_type": "Channel", "resource_id": "chat.quiet"}
    data = client.post("/api/policies/evaluate/", body, content_type="application/json").json()
    assert data["allowed"] is False
    assert data["explanation"]["determining"] == [{"name": "quiet", "text": text, "effect": "forbid"}]


def test_the_simulator_page_shows_the_explanation(admin_user: Any, alice: Any, bob: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    form = {"username": "alice", "action": "subscribe", "resource_type": "Channel", "resource_id": f"user.{bob.pk}",
            "_evaluate": "Evaluate"}  # fmt: skip
    page = client.post("/admin/policies/accesspolicy/simulator/", form).content.decode()
    assert 'id="no-permit-matched"' in page and "No permit matched." in page
    assert "personal-channel-owner" in page.split('id="closest-permits"', 1)[1]
