"""Accounts and groups from a provider: linked by subject only, groups mirrored exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group

from federation.services import external_user_link, user_groups_sync

pytestmark = pytest.mark.django_db

PROVIDER = "oidc:https://id.example.org"


def test_an_account_is_found_by_subject_never_by_email() -> None:
    first, created = external_user_link(provider=PROVIDER, subject="1", username="ada", email="shared@example.org")
    assert created and first.username == "ada" and not first.has_usable_password()
    # Someone else at the provider sets the same email: a new account, not Ada's.
    other, created = external_user_link(provider=PROVIDER, subject="2", username="eve", email="shared@example.org")
    assert created and other.pk != first.pk
    again, created = external_user_link(
        provider=PROVIDER, subject="1", username="renamed", email="ada@example.org", display_name="Ada L."
    )
    assert not created and again.pk == first.pk
    assert (again.username, again.email, again.get_full_name()) == ("ada", "ada@example.org", "Ada L.")


def test_a_local_account_with_the_same_name_is_not_taken_over(make_user: Callable[..., Any]) -> None:
    local = make_user("ada")
    linked, created = external_user_link(provider=PROVIDER, subject="1", username="ada")
    assert created and linked.pk != local.pk and linked.username == "ada-2"


def test_groups_become_exactly_the_providers(alice: Any) -> None:
    alice.groups.add(Group.objects.create(name="old"), Group.objects.create(name="kept"))
    granted, removed = user_groups_sync(user=alice, names=["kept", "engineering", " ", 7])  # type: ignore[list-item]
    assert (granted, removed) == (["engineering"], ["old"])
    assert set(alice.groups.values_list("name", flat=True)) == {"kept", "engineering"}
    assert user_groups_sync(user=alice, names=["kept", "engineering"]) == ([], [])
