#!/usr/bin/env bash
# Start webconnect for a newcomer: migrate, create the demo sign-in once, then
# serve with a Celery worker (and beat) beside the web server. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
PY=.venv/bin/python
DATA="${WEBCONNECT_DATA_DIR:-.data}"
mkdir -p "$DATA"
# Development keys kept in .data/ like the secret key: encryption at rest and the audit signing key.
if [[ -z "${ENCRYPTION_KEYS:-}" ]]; then
  if [[ ! -s "$DATA/encryption-keys" ]]; then
    (umask 077 && $PY -c 'from webconnect.encryption import generate_key; print("k1:" + generate_key())' >"$DATA/encryption-keys")
  fi
  ENCRYPTION_KEYS="$(cat "$DATA/encryption-keys")"
  export ENCRYPTION_KEYS
fi
if [[ -z "${AUDIT_SIGNING_KEY:-}" ]]; then
  if [[ ! -s "$DATA/audit-signing-key" ]]; then
    (umask 077 && $PY -c 'from compliance.signing import generate_signing_key; print(generate_signing_key())' >"$DATA/audit-signing-key")
  fi
  AUDIT_SIGNING_KEY="$(cat "$DATA/audit-signing-key")"
  export AUDIT_SIGNING_KEY
fi

$PY manage.py migrate --noinput
$PY manage.py bootstrap --demo
if [[ "${DEBUG,,}" != "true" && "${DEBUG}" != "1" ]]; then
  $PY manage.py collectstatic --noinput --verbosity 0
fi

if [[ -n "${REDIS_URL:-}" ]]; then broker="Redis"; else broker="the filesystem broker under .data/"; fi
echo "Starting a Celery worker with beat on $broker"
$PY -m celery -A webconnect worker --beat --concurrency 1 --loglevel WARNING &
celery_pid=$!
# The demo producer feeds the demo dashboard through the server (it retries until the server is up).
$PY manage.py demo_producer --url "http://$HOST:$PORT" >/dev/null &
producer_pid=$!
trap 'kill "$celery_pid" "$producer_pid" 2>/dev/null || true; wait "$celery_pid" "$producer_pid" 2>/dev/null || true' EXIT INT TERM

echo
echo "webconnect is serving on http://$HOST:$PORT/  (sign in at http://$HOST:$PORT/accounts/login/)"
echo
$PY manage.py serve --host "$HOST" --port "$PORT"
