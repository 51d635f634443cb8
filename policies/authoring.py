"""Help for people writing Cedar: users by name instead of by id.

Cedar names a user by primary key (`User::"3"`), which nobody remembers. The
policy form's picker searches users and groups by name and inserts the entity
with the username in a comment; the form also lists which user each id in a
policy's text is. Cedar has only line comments (`/* */` is a syntax error), so
the inserted text ends its comment with a newline: `User::"3" // bob` + newline
is valid wherever the entity may stand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Case, IntegerField, Q, Value, When

_USER_REF = re.compile(r'\bUser::"(\d+)"')
_ROLE_REF = re.compile(r'\bRole::"((?:[^"\\]|\\.)*)"')


def cedar_string(value: str) -> str:
    """`value` as a Cedar string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def user_entity(user: Any) -> str:
    """The text the picker inserts for a user: the uid, the username in a line comment, a newline."""
    username = " ".join(user.get_username().split())  # never a line break inside the comment
    return f'User::"{user.pk}" // {username}\n'


def role_entity(group: Group) -> str:
    return f"Role::{cedar_string(group.name)}"


@dataclass(frozen=True)
class PrincipalChoice:
    type: str  # "User" or "Role"
    id: str
    label: str
    insert: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id, "label": self.label, "insert": self.insert}


def principal_search(query: str, *, limit: int = 10) -> list[PrincipalChoice]:
    """Users (by username, name, email or id) and groups (by name) matching `query`, best first."""
    query = query.strip()[:150]
    if not query:
        return []
    users = get_user_model().objects.filter(
        Q(username__icontains=query)
        | Q(first_name__icontains=query)
        | Q(last_name__icontains=query)
        | Q(email__icontains=query)
        | (Q(pk=int(query)) if query.isdigit() and len(query) < 10 else Q(pk__in=[]))
    )
    ranked = users.annotate(
        rank=Case(
            When(username__iexact=query, then=Value(0)),
            When(username__istartswith=query, then=Value(1)),
            default=Value(2),
            output_field=IntegerField(),
        )
    ).order_by("rank", "username")[:limit]
    choices = []
    for user in ranked:
        full_name = user.get_full_name().strip()
        label = user.get_username() + (f" — {full_name}" if full_name else "") + f' (User::"{user.pk}")'
        if not user.is_active:
            label += " — inactive"
        choices.append(PrincipalChoice("User", str(user.pk), label, user_entity(user)))
    groups = Group.objects.filter(name__icontains=query).order_by("name")[: max(3, limit - len(choices))]
    for group in groups:
        choices.append(PrincipalChoice("Role", group.name, f"{group.name} (group, Role::…)", role_entity(group)))
    return choices


def principals_named(text: str) -> list[tuple[str, str]]:
    """(entity, who it is) for every User and Role a policy text names, in order of appearance."""
    user_ids = list(dict.fromkeys(int(pk) for pk in _USER_REF.findall(text)))
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    named = [(f'User::"{pk}"', names.get(pk, "no such user")) for pk in user_ids]
    role_names = list(dict.fromkeys(m.replace('\\"', '"').replace("\\\\", "\\") for m in _ROLE_REF.findall(text)))
    existing = set(Group.objects.filter(name__in=role_names).values_list("name", flat=True))
    named += [(f"Role::{cedar_string(name)}", "group" if name in existing else "no such group") for name in role_names]
    return named
