"""The ID token checks the library leaves out: issuer, audience, expiry and algorithm (not only the signature)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import SuspiciousOperation
from django.test import override_settings

from federation.oidc import OIDCBackend

ISSUER = "https://id.example.org"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def backend() -> OIDCBackend:
    found = OIDCBackend()
    # What _setup() reads from settings and discovery, set directly: no provider is contacted.
    found.OIDC_RP_CLIENT_ID = "site"
    found.OIDC_RP_SIGN_ALGO = "RS256"
    return found


def id_token(key: Any = KEY, algorithm: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "site", "sub": "42", "iat": now, "exp": now + 300, **overrides}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


@override_settings(OIDC_ISSUER=ISSUER)
def test_a_good_id_token_gives_its_claims() -> None:
    assert backend()._verify_jws(id_token(), KEY.public_key())["sub"] == "42"


# Claims, not tokens, are parametrized: a token made at collection time could expire before its
# test runs in a long session (then every case fails as "expired").
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example.org"}, "InvalidIssuerError"),
        ({"aud": "another-site"}, "InvalidAudienceError"),
        ({"exp": -60}, "ExpiredSignatureError"),
        ({"sub": None}, "MissingRequiredClaimError"),
        ({"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)}, "InvalidSignatureError"),
        ({"key": "a-shared-secret-of-thirty-two-bytes!", "algorithm": "HS256"}, "is not RS256"),
    ],
    ids=["issuer", "audience", "expired", "no-subject", "foreign-key", "hs256"],
)
@override_settings(OIDC_ISSUER=ISSUER)
def test_a_bad_id_token_is_refused_with_a_reason(claims: dict[str, Any], reason: str) -> None:
    if "exp" in claims:
        claims = {**claims, "exp": int(time.time()) + claims["exp"]}
    token = id_token(**claims)
    with pytest.raises(SuspiciousOperation) as refused:
        backend()._verify_jws(token, KEY.public_key())
    assert reason in str(refused.value)
    assert token not in str(refused.value)
