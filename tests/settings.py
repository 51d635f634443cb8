"""Test settings: the real settings module with test-only overrides.

The environment is prepared before importing it, and the values set here are
inherited by the server processes that tests start, so they share one secret,
one signing key and one test database.
"""

from __future__ import annotations

import os
import tempfile
import uuid

os.environ.setdefault("SECRET_KEY", "tests-only-" + uuid.uuid4().hex + uuid.uuid4().hex)
os.environ.setdefault("WEBCONNECT_DATA_DIR", tempfile.mkdtemp(prefix="webconnect-tests-"))
os.environ.setdefault("WEBCONNECT_TEST_RUN", uuid.uuid4().hex[:12])
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("DEBUG", "false")
if "OIDC_RSA_PRIVATE_KEY" not in os.environ:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    _key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ["OIDC_RSA_PRIVATE_KEY"] = _key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()

from webconnect.settings import *  # noqa: F403
from webconnect.settings import DATA_DIR, DATABASES, REDIS_URL

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver", "[::1]"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

_RUN = os.environ["WEBCONNECT_TEST_RUN"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so server processes started by tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{_RUN}.sqlite3")}
else:
    # One test database per run, so test runs side by side never share one.
    DATABASES["default"]["TEST"] = {"NAME": f"test_webconnect_{_RUN}"}
# A server process started by a test uses the test database directly.
if os.environ.get("WEBCONNECT_TEST_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["WEBCONNECT_TEST_DATABASE_NAME"]
if REDIS_URL:
    # Keys of this run never meet another run's (or production's) on a shared Redis.
    CACHES["default"]["KEY_PREFIX"] = f"test-{_RUN}"  # noqa: F405
    # A server a test starts with a namespace of its own keeps it (tests/dashboards/test_cluster.py).
    REALTIME_REDIS_PREFIX = os.environ.get("REALTIME_REDIS_PREFIX_OWN") or f"webconnect-test-{_RUN}:rt"
    RATE_LIMIT_KEY_PREFIX = f"webconnect-test-{_RUN}"
# Only server processes started by tests run the background tasks (policy poller,
# recorder); the pytest process itself must not hold a background connection to
# the test database.
KERNEL_BACKGROUND_TASKS = bool(os.environ.get("WEBCONNECT_TEST_DATABASE_NAME"))
if KERNEL_BACKGROUND_TASKS and "POLICY_VERSION_CHECK_INTERVAL" not in os.environ:
    # A server shared by many tests sees each test's policy set at once: the
    # tables are flushed and refilled between tests, faster than any poll.
    POLICY_VERSION_CHECK_INTERVAL = 0
if KERNEL_BACKGROUND_TASKS and "REALTIME_NAMESPACE_CACHE_SECONDS" not in os.environ:
    REALTIME_NAMESPACE_CACHE_SECONDS = 0  # likewise for namespaces
# Servers started by tests serve webconnect plus a bare echo route at ws://.../ (tests/echo.py),
# which the WebSocket conformance test drives; production serves webconnect.asgi:application.
SERVE_APPLICATION = "tests.echo:application"
