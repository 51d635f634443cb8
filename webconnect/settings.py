"""Settings for webconnect, read from the environment.

With nothing set beyond DEBUG=true (what `make run` does) the platform runs
embedded: SQLite, Channels' in-memory layer, a local-memory cache and a
filesystem Celery broker under DATA_DIR. DATABASE_URL and REDIS_URL switch to
PostgreSQL and Redis. Every variable is listed in .env.example.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from webconnect.encryption import parse_key_ring
from webconnect.env import envbool, envint, envlist, envsecret, envstr

# Lets runtime code subscript generic Django classes (ModelAdmin[Model], QuerySet[Model]).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("WEBCONNECT_DATA_DIR", str(BASE_DIR / ".data")))

DEBUG = envbool("DEBUG", False)


def _secret_key() -> str:
    key = envsecret("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (or SECRET_KEY_FILE naming a file).")
    # Development only: a random key kept in DATA_DIR so sessions survive restarts.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key_file = DATA_DIR / "dev-secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
# Browsers opening a WebSocket with a session cookie must come from one of these
# full origins (scheme://host[:port]); when empty, only the same origin as the
# WebSocket's Host header is accepted. Bearer-token clients send no Origin.
WEBSOCKET_ALLOWED_ORIGINS = envlist("WEBSOCKET_ALLOWED_ORIGINS")
# How many reverse proxies in front of Daphne append to X-Forwarded-For; 0 means
# the TCP peer is the client.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0, minimum=0)

INSTALLED_APPS = [
    "daphne",  # first, so runserver serves ASGI (HTTP + WebSocket)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "csp",
    "webconnect",
    "webconnect.jobs",
    "policies",
    "collab",
    "dashboards",
    "bridges",
    "compliance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "webconnect.context.RequestContextMiddleware",
]

ROOT_URLCONF = "webconnect.urls"
ASGI_APPLICATION = "webconnect.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -----------------------------------------------------------

DATABASE_URL = envstr("DATABASE_URL")
REDIS_URL = envstr("REDIS_URL")

if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60))}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "webconnect.sqlite3"),
            "OPTIONS": {
                # The web server, Celery worker and beat share one file: WAL lets
                # readers proceed during a write, IMMEDIATE takes the write lock at
                # BEGIN so two writers queue instead of deadlocking on upgrade.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# No Channels layer: sockets and processes talk over the session kernel's bus
# (webconnect/kernel/bus.py), so consumers register no layer channel at all.
if REDIS_URL:
    CACHES: dict[str, Any] = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    }
    RATE_LIMIT_STORAGE_URI = envstr("RATE_LIMIT_STORAGE_URI", REDIS_URL)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    RATE_LIMIT_STORAGE_URI = envstr("RATE_LIMIT_STORAGE_URI", "memory://")

# --- Policies (Cedar access policies, rate-limit policies) ----------------------

# Each process re-reads the policy version at least this often (seconds), even
# if it missed the Redis notification that normally arrives within milliseconds.
POLICY_POLL_INTERVAL = envint("POLICY_POLL_INTERVAL", 2, minimum=1)
# How old (seconds) the cached policy set may be before a decision re-reads the
# version row; 0 re-reads on every decision (test servers, whose database is
# flushed and refilled between tests).
POLICY_VERSION_CHECK_INTERVAL = envint("POLICY_VERSION_CHECK_INTERVAL", POLICY_POLL_INTERVAL, minimum=0)
# Decisions are cached this long (seconds) within one policy version; 0 = off.
POLICY_DECISION_CACHE_SECONDS = envint("POLICY_DECISION_CACHE_SECONDS", 5, minimum=0)
# Denials and rate-limit hits are audited once per key per this many seconds
# (repeats are counted into the next event), so a flood cannot flood the audit log.
POLICY_AUDIT_INTERVAL = envint("POLICY_AUDIT_INTERVAL", 60, minimum=1)
# The impact preview of a policy change evaluates at most this many requests per
# policy set; past it, principals (then resources) are sampled and it says so.
POLICY_IMPACT_MAX_DECISIONS = envint("POLICY_IMPACT_MAX_DECISIONS", 20_000, minimum=1)
RATE_LIMIT_KEY_PREFIX = envstr("RATE_LIMIT_KEY_PREFIX", "webconnect")

# --- Authentication ----------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (webconnect/throttling.py, the `limits` library's moving
# window). Failed sign-ins per window before this address is refused (429) for
# this account, and for every account (an IPv6 address counts as its /64):
LOGIN_FAILURES_PER_ACCOUNT_IP = envstr("LOGIN_FAILURES_PER_ACCOUNT_IP", "5/15minutes")
LOGIN_FAILURES_PER_IP = envstr("LOGIN_FAILURES_PER_IP", "30/15minutes")
# Failures on one account, from anywhere, after which its sign-ins are slowed
# (never locked): each attempt waits LOGIN_SLOWDOWN_BASE_MS, doubling with every
# further failure, at most LOGIN_SLOWDOWN_MAX_MS.
LOGIN_FAILURES_PER_ACCOUNT = envstr("LOGIN_FAILURES_PER_ACCOUNT", "10/15minutes")
LOGIN_SLOWDOWN_BASE_MS = envint("LOGIN_SLOWDOWN_BASE_MS", 1000, minimum=1)
LOGIN_SLOWDOWN_MAX_MS = envint("LOGIN_SLOWDOWN_MAX_MS", 16000, minimum=1)

EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "webconnect@localhost")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)

# --- OAuth2 / OIDC (django-oauth-toolkit) -------------------------------------

OAUTH2_SCOPES = {
    "openid": "OpenID Connect sign-in",
    "realtime:read": "Subscribe to channels, read history and presence",
    "realtime:write": "Publish to channels",
    "docs:read": "Read documents",
    "docs:write": "Create and edit documents",
    "dashboards:read": "View dashboards and series",
    "dashboards:write": "Create and edit dashboards, ingest points",
    "policies:admin": "Administer access and rate-limit policies",
    "introspection": "Introspect tokens (for resource servers)",
}


def _oidc_private_key() -> str:
    key = envsecret("OIDC_RSA_PRIVATE_KEY")
    if key or not DEBUG:
        return key
    # Development only: a generated signing key kept in DATA_DIR.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key_file = DATA_DIR / "dev-oidc-key.pem"
    if not key_file.exists():
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_file.write_bytes(pem)
        key_file.chmod(0o600)
    return key_file.read_text()


OIDC_RSA_PRIVATE_KEY = _oidc_private_key()

OAUTH2_PROVIDER = {
    "SCOPES": OAUTH2_SCOPES,
    "DEFAULT_SCOPES": ["realtime:read"],
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": envint("OAUTH2_ACCESS_TOKEN_EXPIRE_SECONDS", 3600, minimum=60),
    "REFRESH_TOKEN_EXPIRE_SECONDS": envint("OAUTH2_REFRESH_TOKEN_EXPIRE_SECONDS", 30 * 86400, minimum=60),
    "OAUTH2_VALIDATOR_CLASS": "webconnect.oauth.OAuth2Validator",
    "OIDC_ENABLED": bool(OIDC_RSA_PRIVATE_KEY),
    "OIDC_RSA_PRIVATE_KEY": OIDC_RSA_PRIVATE_KEY,
    "OIDC_ISS_ENDPOINT": envstr("OIDC_ISS_ENDPOINT"),
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"] if DEBUG else ["https"],
    # RFC 9700 (OAuth 2.0 Security BCP): no implicit or password grants, S256 PKCE
    # only, tokens never in URLs, `iss` in authorization responses, tokens stored
    # hashed, and a replayed refresh token revokes its whole family.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
}

# --- Sign in with the organisation's identity provider (federation/) ---------------
# Local accounts always work; LDAP and OpenID Connect are each on when configured.
# Accounts are linked by the directory username or the provider's `sub`, and their
# groups are mirrored into Django groups on every sign-in (README "Sign in with
# your identity provider").

INSTALLED_APPS += ["federation"]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
TEMPLATES[0]["OPTIONS"]["context_processors"].append("federation.context.sign_in_providers")  # type: ignore[index]

# LDAP (django-auth-ldap), through the ordinary sign-in form. Users are found with
# AUTH_LDAP_USER_FILTER under AUTH_LDAP_USER_SEARCH_BASE (binding as AUTH_LDAP_BIND_DN),
# groups are groupOfNames entries under AUTH_LDAP_GROUP_SEARCH_BASE named by `cn`.
AUTH_LDAP_SERVER_URI = envstr("AUTH_LDAP_SERVER_URI")
if AUTH_LDAP_SERVER_URI:
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    AUTH_LDAP_BIND_DN = envstr("AUTH_LDAP_BIND_DN")
    AUTH_LDAP_BIND_PASSWORD = envsecret("AUTH_LDAP_BIND_PASSWORD")
    AUTH_LDAP_USER_SEARCH = LDAPSearch(
        envstr("AUTH_LDAP_USER_SEARCH_BASE"), ldap.SCOPE_SUBTREE, envstr("AUTH_LDAP_USER_FILTER", "(uid=%(user)s)")
    )
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        envstr("AUTH_LDAP_GROUP_SEARCH_BASE"), ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)"
    )
    AUTH_LDAP_GROUP_TYPE = GroupOfNamesType(name_attr="cn")
    AUTH_LDAP_REQUIRE_GROUP = envstr("AUTH_LDAP_REQUIRE_GROUP") or None
    AUTH_LDAP_MIRROR_GROUPS = True
    # Secure by default: credentials never cross the network in clear unless a test server says so.
    AUTH_LDAP_START_TLS = envbool("AUTH_LDAP_START_TLS", True)
    # The display name (`cn`) goes in first_name, so get_full_name() shows it whole.
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "cn", "email": "mail"}
    AUTH_LDAP_ALWAYS_UPDATE_USER = True
    # A directory that does not answer fails the sign-in in seconds, not minutes.
    AUTH_LDAP_CONNECTION_OPTIONS = {
        ldap.OPT_NETWORK_TIMEOUT: envint("AUTH_LDAP_TIMEOUT_SECONDS", 5, minimum=1),
        ldap.OPT_TIMEOUT: envint("AUTH_LDAP_TIMEOUT_SECONDS", 5, minimum=1),
        ldap.OPT_REFERRALS: 0,
    }
    AUTHENTICATION_BACKENDS.append("federation.ldap.LDAPBackend")

# OpenID Connect sign-in (mozilla-django-oidc, authorization code with S256 PKCE):
# a "Sign in with OIDC_PROVIDER_NAME" button on the sign-in page. The provider's
# endpoints come from OIDC_ISSUER's discovery document; accounts are linked by
# (issuer, sub); the groups in OIDC_GROUPS_CLAIM replace the user's groups at
# every sign-in. Register {site}/oidc/callback/ as the redirect URI and
# {site}/accounts/login/ as the post-logout redirect URI at the provider.
OIDC_ISSUER = envstr("OIDC_ISSUER").rstrip("/")
OIDC_PROVIDER_NAME = envstr("OIDC_PROVIDER_NAME", "your identity provider")
OIDC_GROUPS_CLAIM = envstr("OIDC_GROUPS_CLAIM", "groups")
OIDC_TIMEOUT = envint("OIDC_TIMEOUT_SECONDS", 10, minimum=1)
if OIDC_ISSUER:
    OIDC_RP_CLIENT_ID = envstr("OIDC_CLIENT_ID")
    OIDC_RP_CLIENT_SECRET = envsecret("OIDC_CLIENT_SECRET")
    if not OIDC_RP_CLIENT_ID:
        raise ImproperlyConfigured("OIDC_ISSUER is set but OIDC_CLIENT_ID is not")
    OIDC_RP_SCOPES = envstr("OIDC_SCOPES", "openid profile email")
    OIDC_RP_SIGN_ALGO = envstr("OIDC_SIGN_ALGO", "RS256")
    OIDC_USE_PKCE = True
    OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
    OIDC_AUTHENTICATION_CALLBACK_URL = "federation:oidc-callback"
    LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/"
    AUTHENTICATION_BACKENDS.append("federation.oidc.OIDCBackend")
    # Bearer tokens from the provider may open /ws/ (federation/bearer.py): JWTs checked against the
    # provider's JWKS (signature, issuer, audience OIDC_BEARER_AUDIENCE, expiry); only this server's
    # scopes (OAUTH2_SCOPES) in their `scope` claim count; the subject must have signed in here once.
    OIDC_ACCEPT_BEARER = envbool("OIDC_ACCEPT_BEARER", False)
    OIDC_BEARER_AUDIENCE = envstr("OIDC_BEARER_AUDIENCE", OIDC_RP_CLIENT_ID)

# webconnect as an OpenID provider: RP-initiated logout (/o/logout/), so a site
# that signs in with webconnect can end the webconnect session too. It asks the
# user to confirm unless the id_token_hint names the signed-in user.
OAUTH2_PROVIDER["OIDC_RP_INITIATED_LOGOUT_ENABLED"] = envbool("OIDC_RP_INITIATED_LOGOUT_ENABLED", True)
OAUTH2_PROVIDER["OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT"] = envbool("OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT", False)
# Access tokens as signed JWTs (RFC 9068) that other services check with /o/.well-known/jwks.json;
# their `aud` is the client and OAUTH2_ACCESS_TOKEN_AUDIENCE (the services meant to accept them).
OAUTH2_ACCESS_TOKEN_AUDIENCE = envlist("OAUTH2_ACCESS_TOKEN_AUDIENCE")
if envbool("OAUTH2_JWT_ACCESS_TOKENS", False):
    OAUTH2_PROVIDER["ACCESS_TOKEN_GENERATOR"] = "webconnect.oauth.jwt_access_token"  # noqa: S105 (a path)
    OAUTH2_PROVIDER["REFRESH_TOKEN_GENERATOR"] = "oauthlib.oauth2.rfc6749.tokens.random_token_generator"  # noqa: S105
# Redirect URI schemes clients may register: https only (http too with DEBUG), unless listed here,
# e.g. "https,http" for sites on a private network or loopback (RFC 8252 §7.3).
if envlist("OAUTH2_ALLOWED_REDIRECT_URI_SCHEMES"):
    OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"] = envlist("OAUTH2_ALLOWED_REDIRECT_URI_SCHEMES")

# --- REST API ------------------------------------------------------------------

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "oauth2_provider.contrib.rest_framework.OAuth2Authentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "webconnect.api.permissions.TokenHasRequiredScopes",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "webconnect.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

# --- Content-Security-Policy (django-csp) -----------------------------------------
# Every page runs only the project's own static scripts and styles: no inline
# <script>, no <style> blocks or style="" attributes (json_script blocks are data,
# never executed). 'self' in connect-src covers ws:/wss: of the same host
# (CSP Level 3; checked in Chromium by tests/browser/test_csp_browser.py).
# data: images are the icons swagger-ui's and the admin's stylesheets embed.
# No form-action: an OAuth consent form redirects to the client's redirect URI.
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# /api/docs/ and /api/schema/ need a signed-in caller unless opened on purpose
# (default: open only under DEBUG).
API_DOCS_PUBLIC = envbool("API_DOCS_PUBLIC", DEBUG)

SPECTACULAR_SETTINGS = {
    "TITLE": "webconnect API",
    "DESCRIPTION": "Real-time collaboration platform: channels, documents, dashboards and policies.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # The interactive page's assets come from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------

if REDIS_URL:
    CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL)
    # A task a killed worker had taken (acks_late) goes back to the queue once it
    # has been unacknowledged for visibility_timeout; workers look for such tasks
    # every interval x throttle seconds (kombu's defaults: 10 x 10). A running job
    # renews its message every JOB_LEASE_SECONDS / 3 (webconnect.celery.message_keepalive),
    # so the timeout is sized to the lease, not to the longest job: it must exceed
    # JOB_LEASE_SECONDS (also the countdown a retried job's message waits unrenewed),
    # and other tasks (document compaction, seconds) are safe to run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 300, minimum=1),
        "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", 10, minimum=1),
        "unacked_restore_throttle": envint("CELERY_UNACKED_RESTORE_THROTTLE", 10, minimum=1),
    }
else:
    # A broker that needs no server: messages are files under DATA_DIR, shared
    # by the web process, the worker and beat on one machine.
    _broker_dir = DATA_DIR / "celery-broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 360, minimum=1)
CELERY_TASK_MAX_RETRIES = envint("CELERY_TASK_MAX_RETRIES", 3, minimum=0)
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Jobs (retention, compaction, audit) ---------------------------------------

JOB_BATCH_SIZE = envint("JOB_BATCH_SIZE", 1000, minimum=1)
# A running job holds a lease this long and renews it after every batch and from a
# thread every third of it; a killed worker's lease lapses after it, its run is then
# marked lost, and the redelivered task carries on.
JOB_LEASE_SECONDS = envint("JOB_LEASE_SECONDS", 120, minimum=1)
if REDIS_URL and CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= JOB_LEASE_SECONDS:
    raise ImproperlyConfigured(
        "CELERY_VISIBILITY_TIMEOUT must be longer than JOB_LEASE_SECONDS: a running job's message is "
        "renewed every JOB_LEASE_SECONDS / 3 and a retried job's waits JOB_LEASE_SECONDS unrenewed"
    )
JOB_BATCH_PAUSE_MS = envint("JOB_BATCH_PAUSE_MS", 0, minimum=0)
JOB_FAILURE_ALERT_THRESHOLD = envint("JOB_FAILURE_ALERT_THRESHOLD", 3, minimum=1)
AUDIT_EXPORT_DIR = envstr("AUDIT_EXPORT_DIR", str(DATA_DIR / "audit-exports"))

# --- Compliance: encryption at rest, signed audit checkpoints, data-subject requests ----

# `id:key` pairs, newest first (key: 32 bytes, urlsafe base64); set = encryption on. The first
# key encrypts, all decrypt; `manage.py rotate_keys` moves values to the first. `make run`
# generates one into DATA_DIR. A malformed value stops start-up here, naming the variable.
ENCRYPTION_KEYS = envsecret("ENCRYPTION_KEYS")
parse_key_ring(ENCRYPTION_KEYS)
# Ed25519 private key (urlsafe base64 of 32 bytes) that signs audit checkpoints; keep it apart
# from the database (an attacker who can rewrite the chain must not be able to re-sign it).
AUDIT_SIGNING_KEY = envsecret("AUDIT_SIGNING_KEY")
AUDIT_CHECKPOINT_EVERY = envint("AUDIT_CHECKPOINT_EVERY", 100, minimum=1)  # events between checkpoints
AUDIT_CHECKPOINT_FILE = envstr("AUDIT_CHECKPOINT_FILE")  # also append each checkpoint (JSON line) here
AUDIT_CHECKPOINT_SYSLOG = envstr("AUDIT_CHECKPOINT_SYSLOG")  # and/or to syslog: /dev/log or host:port (UDP)
COMPLIANCE_EXPORT_DIR = envstr("COMPLIANCE_EXPORT_DIR", str(DATA_DIR / "subject-exports"))
COMPLIANCE_ARCHIVE_RETENTION_DAYS = envint("COMPLIANCE_ARCHIVE_RETENTION_DAYS", 30, minimum=1)

# --- Real-time server -------------------------------------------------------------

# Daphne's own default (1 MiB) is kept on purpose for JSON frames; a Yjs first
# sync of a large document is the case that needs more, so it is one setting.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = envint("WEBSOCKET_MAX_MESSAGE_SIZE", 4 * 1024 * 1024, minimum=1024)
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = envint("WEBSOCKET_MAX_FRAME_SIZE", 1024 * 1024, minimum=1024)
# Server-side timeouts against slow clients (slowloris), not only a proxy's: the request line and
# headers must arrive within HTTP_HEADER_TIMEOUT seconds of the connection (or of the previous
# response on a kept-alive one), however slowly they trickle; a connection that sends nothing is
# closed after HTTP_IDLE_TIMEOUT; the application must answer within HTTP_RESPONSE_TIMEOUT
# (0 = no limit; streaming exports are cut there too); a WebSocket upgrade must be accepted
# within WEBSOCKET_CONNECT_TIMEOUT.
HTTP_HEADER_TIMEOUT = envint("HTTP_HEADER_TIMEOUT", 10, minimum=1)
HTTP_IDLE_TIMEOUT = envint("HTTP_IDLE_TIMEOUT", 60, minimum=1)
HTTP_RESPONSE_TIMEOUT = envint("HTTP_RESPONSE_TIMEOUT", 300, minimum=0)
WEBSOCKET_CONNECT_TIMEOUT = envint("WEBSOCKET_CONNECT_TIMEOUT", 10, minimum=1)
# permessage-deflate (RFC 7692), negotiated with clients that offer it. Off by default: compressing
# attacker-influenced data next to secrets over TLS invites CRIME/BREACH-style attacks (OWASP), and
# each compressed socket holds a compressor (docs/protocol.md has the measured memory). Daphne and
# uvicorn; Granian has none. The window (2^bits bytes, 9..15) and zlib memLevel (1..9) bound that memory.
WEBSOCKET_DEFLATE = envbool("WEBSOCKET_DEFLATE", False)
WEBSOCKET_DEFLATE_WINDOW_BITS = envint("WEBSOCKET_DEFLATE_WINDOW_BITS", 12, minimum=9)
WEBSOCKET_DEFLATE_MEM_LEVEL = envint("WEBSOCKET_DEFLATE_MEM_LEVEL", 5, minimum=1)
if WEBSOCKET_DEFLATE_WINDOW_BITS > 15 or WEBSOCKET_DEFLATE_MEM_LEVEL > 9:
    raise ImproperlyConfigured("WEBSOCKET_DEFLATE_WINDOW_BITS must be 9..15 and WEBSOCKET_DEFLATE_MEM_LEVEL 1..9")

# Real-time messaging (/ws/, webconnect.realtime). The server sends a `ping` frame
# every interval; a connection that sends nothing for the idle timeout is closed.
REALTIME_HEARTBEAT_INTERVAL = envint("REALTIME_HEARTBEAT_INTERVAL", 25, minimum=1)
REALTIME_IDLE_TIMEOUT = envint("REALTIME_IDLE_TIMEOUT", 75, minimum=2)
# A JSON frame larger than this closes the connection with 4413.
REALTIME_MAX_FRAME_BYTES = envint("REALTIME_MAX_FRAME_BYTES", 64 * 1024, minimum=256)
# The same for a socket that has not authenticated (anonymous readers only subscribe and ask for history).
REALTIME_ANONYMOUS_MAX_FRAME_BYTES = envint("REALTIME_ANONYMOUS_MAX_FRAME_BYTES", 4 * 1024, minimum=256)
# Namespace settings are cached per process this long (seconds); a name missing
# from the cache is looked up again after a second.
# How long a WebSocket handshake may reuse an access token it looked up (revocation forgets it at once).
AUTH_TOKEN_CACHE_SECONDS = envint("AUTH_TOKEN_CACHE_SECONDS", 5, minimum=0)
REALTIME_NAMESPACE_CACHE_SECONDS = envint("REALTIME_NAMESPACE_CACHE_SECONDS", 5, minimum=0)
REALTIME_MAX_SUBSCRIPTIONS = envint("REALTIME_MAX_SUBSCRIPTIONS", 100, minimum=1)
# Frames waiting to be written to one socket; a consumer that falls this far behind is disconnected.
REALTIME_QUEUE_SIZE = envint("REALTIME_QUEUE_SIZE", 1000, minimum=1)
# Ordered frame transformers (dotted paths to async callables), then plugin request methods ("name=dotted.path").
REALTIME_PIPELINE = envlist(
    "REALTIME_PIPELINE", ["webconnect.realtime.pipeline.validate_payload", "webconnect.realtime.pipeline.audit_tap"]
)
REALTIME_REQUEST_METHODS = envlist("REALTIME_REQUEST_METHODS")
# Keys and pub/sub channels of the real-time hub in Redis (services mode) start with this.
REALTIME_REDIS_PREFIX = envstr("REALTIME_REDIS_PREFIX", "webconnect:rt")
# A Redis Cluster (redis://host:port of any node) for channel traffic, history, presence and the
# kernel's bus (sharded pub/sub); empty: all of it on REDIS_URL. Cache, Celery broker and rate
# limits stay on REDIS_URL either way.
REALTIME_REDIS_CLUSTER_URL = envstr("REALTIME_REDIS_CLUSTER_URL")
# How long a subscribe waits for this process's Redis subscription to be live
# (after a Redis restart) before it answers `unavailable`.
REALTIME_BUS_READY_TIMEOUT = envint("REALTIME_BUS_READY_TIMEOUT", 5, minimum=1)
# Start the per-process background tasks (policy poller, dashboards recorder, ops)
# on a server's first connection (webconnect.kernel.startup).
KERNEL_BACKGROUND_TASKS = envbool("KERNEL_BACKGROUND_TASKS", True)
# On SIGTERM a server process drains (flush, close sockets with 4501) within this long.
SHUTDOWN_GRACE_SECONDS = envint("SHUTDOWN_GRACE_SECONDS", 10, minimum=1)
# Seconds after which the presence entries of a server process that stopped refreshing them (it died) vanish.
REALTIME_PRESENCE_TTL = envint("REALTIME_PRESENCE_TTL", 30, minimum=3)
# The SSE fallback (GET /api/channels/<channel>/events/) writes a comment this often (seconds) and
# re-checks the stream's authorization then.
REALTIME_SSE_HEARTBEAT_SECONDS = envint("REALTIME_SSE_HEARTBEAT_SECONDS", 15, minimum=1)
# /metrics is for staff, and for these client addresses (exact IPs or CIDR ranges).
METRICS_ALLOWED_IPS = envlist("METRICS_ALLOWED_IPS")

# --- Dashboards ------------------------------------------------------------------

# A series query may return at most this many buckets ((to - from) / step); more is a 400.
DASHBOARDS_MAX_QUERY_POINTS = envint("DASHBOARDS_MAX_QUERY_POINTS", 10_000, minimum=10)
# Messages per batch ingest request.
DASHBOARDS_INGEST_MAX_BATCH = envint("DASHBOARDS_INGEST_MAX_BATCH", 1000, minimum=1)
# Channel messages the recorder holds between two writes (the oldest are dropped beyond it).
DASHBOARDS_RECORDER_BUFFER = envint("DASHBOARDS_RECORDER_BUFFER", 100_000, minimum=100)
# How often each web process publishes its operations figures on sys.ops.
DASHBOARDS_OPS_INTERVAL_MS = envint("DASHBOARDS_OPS_INTERVAL_MS", 1000, minimum=100)

# --- Bridges (RabbitMQ, MQTT) ---------------------------------------------------------

# Brokers of `manage.py runbridges` (empty: that bridge is off). The web processes need the same values:
# they queue messages for the bridges that are on. Per-namespace routes are edited in the admin.
BRIDGES_AMQP_URL = envsecret("BRIDGES_AMQP_URL")  # amqp://user:password@host:5672/vhost
BRIDGES_MQTT_URL = envsecret("BRIDGES_MQTT_URL")  # mqtt://user:password@host:1883 (mqtts:// for TLS)
# The outage buffer: messages queued per target in Redis while a broker is away; beyond it they are counted as dropped.
BRIDGES_OUTBOX_MAX = envint("BRIDGES_OUTBOX_MAX", 100_000, minimum=1)
BRIDGES_BATCH_SIZE = envint("BRIDGES_BATCH_SIZE", 200, minimum=1)
# How long a process uses the bridge settings it read (0: reads them for every message).
BRIDGES_CONFIG_SECONDS = envint("BRIDGES_CONFIG_SECONDS", 5, minimum=0)
# Unacknowledged AMQP deliveries per ingest queue.
BRIDGES_INGEST_PREFETCH = envint("BRIDGES_INGEST_PREFETCH", 100, minimum=1)
# Ingested message ids remembered to drop redeliveries.
BRIDGES_DEDUP_SECONDS = envint("BRIDGES_DEDUP_SECONDS", 3600, minimum=1)
BRIDGES_MQTT_CLIENT_ID = envstr("BRIDGES_MQTT_CLIENT_ID", "webconnect-bridge")
# How long the broker keeps the bridge's MQTT session (subscriptions, unacknowledged messages) while it is away.
BRIDGES_MQTT_SESSION_EXPIRY = envint("BRIDGES_MQTT_SESSION_EXPIRY", 86_400, minimum=0)
# One active runner: the others take over within this long after it dies.
BRIDGES_LEASE_SECONDS = envint("BRIDGES_LEASE_SECONDS", 15, minimum=3)
BRIDGES_METRICS_INTERVAL_MS = envint("BRIDGES_METRICS_INTERVAL_MS", 1000, minimum=100)
# Run the recorder and the ops publisher in each web process (started by its first HTTP request).
DASHBOARDS_BACKGROUND = envbool("DASHBOARDS_BACKGROUND", True)

# --- Internationalisation, static files -----------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (production) ---------------------------------------------------------

# HTTPS=true is the one switch for a deployment behind TLS; the individual
# settings can still be overridden.
HTTPS = envbool("HTTPS", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", HTTPS)
if envbool("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXY_COUNT > 0):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Logging -------------------------------------------------------------------------

LOG_LEVEL = envstr("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = envstr("LOG_FORMAT", "text" if DEBUG else "json")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "webconnect.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "INFO"},
    },
}
