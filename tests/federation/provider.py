"""A second webconnect server acting as the OpenID provider, on a database of its own (SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import ROOT

CLIENT_ID = "webconnect-rp"
CLIENT_SECRET = "rp-client-secret-for-tests-only"
PROVIDER_PASSWORD = "provider-password-of-ada"
PROGRAM_ID = "a-program"  # a client-credentials client whose tokens act for ada


@dataclass
class ProviderDatabase:
    root: Path

    @property
    def path(self) -> Path:
        return self.root / "provider.sqlite3"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": f"sqlite:///{self.path}",
            "WEBCONNECT_TEST_DATABASE_NAME": str(self.path),
            "OAUTH2_ALLOWED_REDIRECT_URI_SCHEMES": "https,http",  # the site under test is plain http
            # Access tokens as JWTs meant for the site too, so it can check them with the JWKS alone.
            "OAUTH2_JWT_ACCESS_TOKENS": "true",
            "OAUTH2_ACCESS_TOKEN_AUDIENCE": CLIENT_ID,
            "REALTIME_REDIS_PREFIX_OWN": f"webconnect-test-{os.environ.get('WEBCONNECT_TEST_RUN', 'x')}-provider:rt",
            # Its own signing key: the site signing in knows it only through the provider's JWKS.
            "OIDC_RSA_PRIVATE_KEY": rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode(),
        }

    def manage(self, env: dict[str, str], *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return done.stdout.decode()


SEED = """
from django.contrib.auth.models import Group, User
from oauth2_provider.models import Application
ada = User.objects.create_user("ada", email="ada@example.org", password={password!r}, first_name="Ada Lovelace")
ada.groups.add(Group.objects.create(name="engineering"), Group.objects.create(name="oncall"))
Application.objects.create(
    name="webconnect RP", client_id={client_id!r}, client_secret={client_secret!r}, user=ada,
    client_type="confidential", authorization_grant_type="authorization-code",
    redirect_uris={redirect!r}, post_logout_redirect_uris={after_logout!r},
    skip_authorization=True, algorithm="RS256",
)
Application.objects.create(
    name="a program", client_id={program_id!r}, client_secret={client_secret!r}, user=ada,
    client_type="confidential", authorization_grant_type="client-credentials", algorithm="RS256",
)
"""


def new_provider_database() -> ProviderDatabase:
    return ProviderDatabase(Path(tempfile.mkdtemp(prefix="webconnect-provider-")))


def seed_script(rp_url: str) -> str:
    return SEED.format(
        password=PROVIDER_PASSWORD,
        client_id=CLIENT_ID,
        program_id=PROGRAM_ID,
        client_secret=CLIENT_SECRET,
        redirect=f"{rp_url}/oidc/callback/",
        after_logout=f"{rp_url}/accounts/login/",
    )
