"""OAuth client secrets kept readable (hash_client_secret off) are stored sealed and still work."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from oauth2_provider.models import get_application_model

from tests.compliance.helpers import new_keys

pytestmark = pytest.mark.django_db


def test_a_readable_client_secret_is_sealed_in_the_database_and_still_authenticates(alice: Any) -> None:
    secret = secrets.token_urlsafe(32)
    with override_settings(ENCRYPTION_KEYS=new_keys("k1")):
        app = get_application_model().objects.create(
            name="hs256 client",
            user=alice,
            client_type="confidential",
            authorization_grant_type="client-credentials",
            client_secret=secret,
            hash_client_secret=False,
        )
        assert app.client_secret == secret  # the instance keeps the plaintext for its caller
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT client_secret FROM {get_application_model()._meta.db_table} WHERE id = %s",  # noqa: S608
                [app.pk],
            )
            stored = cursor.fetchone()[0]
        assert stored.startswith("wce1:k1:") and secret not in stored
        assert get_application_model().objects.get(pk=app.pk).client_secret == secret
        granted = Client().post(
            "/o/token/",
            {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": secret},
        )
        assert granted.status_code == 200, granted.content
        refused = Client().post(
            "/o/token/", {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": stored}
        )
        assert refused.status_code == 401
