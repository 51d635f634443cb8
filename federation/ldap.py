"""LDAP sign-in through the ordinary sign-in form (django-auth-ldap).

django-auth-ldap binds, searches, checks AUTH_LDAP_REQUIRE_GROUP and mirrors
the groups; this subclass adds what the product needs around it: an account is
found by its directory identity (a local account that merely has the same
name is never taken over), every outcome is audited with its reason, and the
form is told why a sign-in was refused when the user can act on it.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import ldap
from django.db import transaction
from django.dispatch import receiver
from django_auth_ldap.backend import LDAPBackend as BaseLDAPBackend
from django_auth_ldap.backend import ldap_error

from federation.models import ExternalIdentity
from federation.services import external_login_record, group_names, refuse

logger = logging.getLogger(__name__)

PROVIDER = "ldap"

# Errors django-auth-ldap met during the current attempt; it reports them by signal and carries on.
_errors: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar("ldap_errors", default=None)

UNREACHABLE = "The directory server cannot be reached, so directory accounts cannot sign in right now. Try again later."
NOT_IN_GROUP = "Your directory account is not in the group allowed to sign in here. Ask your administrator for access."
LOCAL_NAME = "A local account already has this name; sign in with its own password, or ask an administrator."


@receiver(ldap_error)
def _remember_error(sender: Any, context: str, exception: BaseException, **kwargs: Any) -> None:
    errors = _errors.get()
    if errors is not None:
        errors.append(exception)


class _LocalNameTaken(Exception):
    pass


class LDAPBackend(BaseLDAPBackend):  # type: ignore[misc]
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if not self.settings.SERVER_URI:
            return None  # LDAP is not configured
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        identity = (
            ExternalIdentity.objects.select_related("user").filter(provider=PROVIDER, subject=username.lower()).first()
        )
        if identity is not None:
            return identity.user, False
        model = self.get_user_model()
        if model._default_manager.filter(username__iexact=username).exists():
            raise _LocalNameTaken(username)
        return model(username=username), True

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        request = ldap_user._request
        username = ldap_user._username
        errors: list[BaseException] = []
        token = _errors.set(errors)
        try:
            with transaction.atomic():
                known = ExternalIdentity.objects.filter(provider=PROVIDER, subject=username.lower()).first()
                before = group_names(known.user if known is not None else None)
                ldap_user._authenticate_user_dn(password)
                ldap_user._check_requirements()
                ldap_user._get_or_create_user()
                user = ldap_user._user
                _identity, created = ExternalIdentity.objects.get_or_create(
                    provider=PROVIDER, subject=username.lower(), defaults={"user": user}
                )
                after = group_names(user)
                external_login_record(
                    request=request,
                    user=user,
                    provider=PROVIDER,
                    subject=ldap_user.dn or username,
                    granted=sorted(after - before),
                    removed=sorted(before - after),
                    created=created,
                )
                return user
        except ldap_user.AuthenticationFailed as exc:
            self._refused(request, username, str(exc), errors)
        except _LocalNameTaken:
            refuse(request, provider=PROVIDER, reason="a local account has this name", message=LOCAL_NAME)
        except ldap.LDAPError as exc:
            self._refused(request, username, "", [*errors, exc])
        finally:
            _errors.reset(token)
        return None

    def _refused(self, request: Any, username: str, failure: str, errors: list[BaseException]) -> None:
        if errors:
            # Only the error's class: its text may hold server details the user must not see.
            reason = f"directory unreachable ({type(errors[-1]).__name__})"
            logger.warning("LDAP sign-in for %r failed: %s", username, errors[-1])
            refuse(request, provider=PROVIDER, reason=reason, message=UNREACHABLE)
        elif "REQUIRE_GROUP" in failure:
            refuse(request, provider=PROVIDER, reason="not in the required group", message=NOT_IN_GROUP)
        elif "map the username" in failure:
            refuse(request, provider=PROVIDER, reason="unknown user")
        elif "rejected" in failure:
            refuse(request, provider=PROVIDER, reason="wrong password")
        else:
            refuse(request, provider=PROVIDER, reason=failure or "refused")
