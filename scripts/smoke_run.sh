#!/usr/bin/env bash
# Starts `make run` on its embedded defaults (SQLite, its own redis-server), waits for
# /readyz = 200, then stops it with Ctrl-C (SIGINT) and checks that every child is gone.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${SMOKE_PORT:-8765}
var=$(mktemp -d)
log="$var/run.log"
env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL PORT="$port" PORTAL_VAR_DIR="$var" \
  setsid make run >"$log" 2>&1 &
pid=$!
cleanup() { kill -KILL -- "-$pid" 2>/dev/null || true; }
trap cleanup EXIT

ready=""
for _ in $(seq 240); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=yes; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
if [ -z "$ready" ]; then echo "run command never became ready:"; tail -50 "$log"; exit 1; fi
echo "ready: $(curl -fsS "http://127.0.0.1:$port/readyz")"
grep -q "password:" "$log" || { echo "admin password was not printed"; exit 1; }
curl -fsS "http://127.0.0.1:$port/models/" >/dev/null
# The playground's libraries, installed by npm ci and served from node_modules.
curl -fsS "http://127.0.0.1:$port/static/vendor/marked.umd.js" >/dev/null
# A prediction through the API, run by the worker, on the embedded SQLite and Redis.
manage() { env -u DATABASE_URL PORTAL_VAR_DIR="$var" .venv/bin/python manage.py "$@"; }
org=$(manage create_org --name "Smoke" --owner-email admin@localhost | tail -n1)
manage grant_credits --org "$org" --amount 1 --note "smoke test" >/dev/null
token=$(manage issue_token --org "$org" --name smoke | tail -n1)
# The worker may still be loading its runners: 503 (no worker for the queue) until then.
answer=""
for _ in $(seq 120); do
  answer=$(curl -sS -H "Authorization: Bearer $token" -H "Prefer: wait=30" \
    -H "Content-Type: application/json" -d '{"model": "echo", "input": {"prompt": "smoke test"}}' \
    "http://127.0.0.1:$port/api/v1/predictions")
  echo "$answer" | grep -q '"code": *"no_worker' || break
  sleep 1
done
echo "$answer" | grep -q '"status": *"succeeded"' || { echo "prediction did not succeed: $answer"; tail -30 "$log"; exit 1; }
echo "prediction succeeded"

kill -INT -- "-$pid"
for _ in $(seq 30); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 1; done
if kill -0 -- "-$pid" 2>/dev/null; then echo "children still running after Ctrl-C"; exit 1; fi
trap - EXIT
echo "run command stopped cleanly"
