#!/usr/bin/env bash
# Both test tiers. The embedded tier never sees DATABASE_URL/REDIS_URL; the
# services tier runs only with both set, and is required when
# WEBCONNECT_REQUIRE_SERVICES=1 (CI), where a skipped services test fails.
# First it installs the Node packages the Node tests use, from frontend/'s lockfile.
# Arguments go to pytest (both tiers).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

truthy() { [[ "${1,,}" =~ ^(1|true|yes)$ ]]; }
banner() {
  echo
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  for line in "$@"; do echo "!! $line"; done
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo
}

# Under CI a missing Node fails the Node tests instead of skipping them. The
# embedded tier does not see WEBCONNECT_REQUIRE_SERVICES, so this is passed on
# as WEBCONNECT_REQUIRE_NODE.
if truthy "${CI:-}" || truthy "${WEBCONNECT_REQUIRE_SERVICES:-}" || truthy "${WEBCONNECT_REQUIRE_NODE:-}"; then
  export WEBCONNECT_REQUIRE_NODE=1
fi
node_setup=0
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  # npm ci writes node_modules/.package-lock.json: older than the lockfile means stale.
  stamp=frontend/node_modules/.package-lock.json
  if [[ ! -f $stamp || frontend/package-lock.json -nt $stamp ]]; then
    echo "== Node dependencies: npm ci in frontend/ (node_modules is missing or older than package-lock.json) =="
    if ! (cd frontend && npm ci --no-audit --no-fund); then
      banner "npm ci in frontend/ FAILED: the Node tests will fail (see npm's output above)."
      node_setup=1
    fi
  fi
else
  if [[ -n "${WEBCONNECT_REQUIRE_NODE:-}" ]]; then
    banner "NODE NOT FOUND: node and npm are needed for the Node interop tests." \
      "CI (CI / WEBCONNECT_REQUIRE_SERVICES) is set: they FAIL. Install Node.js 18+ with npm."
  else
    banner "NODE NOT FOUND: node and npm are needed for the Node interop tests;" \
      "they will be SKIPPED. Install Node.js 18+ with npm to run them."
  fi
fi

echo "== embedded tier: SQLite, in-memory channel layer and cache =="
env -u DATABASE_URL -u REDIS_URL -u WEBCONNECT_REQUIRE_SERVICES "$PY" -m pytest -m "not services" "$@"
embedded=$?

if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
  echo "== services tier: PostgreSQL ($DATABASE_URL) and Redis ($REDIS_URL) =="
  "$PY" -m pytest -m services "$@"
  services=$?
else
  banner "SERVICES TIER SKIPPED: DATABASE_URL and REDIS_URL are not both set." \
    "Run it with e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/webconnect" \
    "                 REDIS_URL=redis://127.0.0.1:6379/0 make test"
  services=0
  if truthy "${WEBCONNECT_REQUIRE_SERVICES:-}"; then
    echo "WEBCONNECT_REQUIRE_SERVICES is set: a skipped services tier is a failure."
    services=1
  fi
fi

if (( embedded != 0 || services != 0 || node_setup != 0 )); then
  echo "FAILED: embedded tier exit $embedded, services tier exit $services, Node set-up exit $node_setup"
  exit 1
fi
echo "Both tiers passed."
