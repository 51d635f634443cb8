#!/usr/bin/env bash
# Both test tiers. The embedded tier never sees DATABASE_URL/REDIS_URL; the
# services tier runs only with both set, and is required when
# WEBCONNECT_REQUIRE_SERVICES=1 (CI), where a skipped services test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "== embedded tier: SQLite, in-memory channel layer and cache =="
env -u DATABASE_URL -u REDIS_URL -u WEBCONNECT_REQUIRE_SERVICES "$PY" -m pytest -m "not services" "$@"
embedded=$?

if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
  echo "== services tier: PostgreSQL ($DATABASE_URL) and Redis ($REDIS_URL) =="
  "$PY" -m pytest -m services "$@"
  services=$?
else
  echo
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!! SERVICES TIER SKIPPED: DATABASE_URL and REDIS_URL are not both set."
  echo "!! Run it with e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/webconnect"
  echo "!!                  REDIS_URL=redis://127.0.0.1:6379/0 make test"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  services=0
  if [[ "${WEBCONNECT_REQUIRE_SERVICES:-}" =~ ^(1|true|yes)$ ]]; then
    echo "WEBCONNECT_REQUIRE_SERVICES is set: a skipped services tier is a failure."
    services=1
  fi
fi

if (( embedded != 0 || services != 0 )); then
  echo "FAILED: embedded tier exit $embedded, services tier exit $services"
  exit 1
fi
echo "Both tiers passed."
