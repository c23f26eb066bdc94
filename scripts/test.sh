#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test, the official OpenRouter SDK
# (openrouter==1.3.84) driving a real tracecast server, the web dashboard in headless
# Chromium, and the vendor validators. Needs only Rust (stable) and Python 3 (and Node.js 20+
# for the Node suites); everything else is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python venv for the SDK tests, the vendor validators and the test servers"
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/otlp_ingest/requirements.txt
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/gateway_sdk/requirements.txt
for req in tests/vendors/requirements-*.txt; do
  [ -e "$req" ] && "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
done
# Vendor packages used only for their models, whose own dependencies clash with the venv.
for req in tests/vendors/nodeps-*.txt; do
  [ -e "$req" ] && "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$req"
done
# Rust integration tests that need a Python tool (a vendor's test server, chdb) use this one.
export TRACECAST_TEST_PYTHON="$PWD/$venv/bin/python"
if [ -x scripts/install-test-deps.sh ]; then
  scripts/install-test-deps.sh
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit and integration tests)"
cargo build --locked --bins
cargo test --locked --workspace

step "store and API tests again on PostgreSQL"
# Each test server (and each store test) creates a fresh, uniquely named database on this
# PostgreSQL server and drops it afterwards. Default: the local server, user postgres.
pg_url="${TRACECAST_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
TRACECAST_TEST_DATABASE_URL="$pg_url" cargo test --locked -p tracecast-store --test backends
TRACECAST_TEST_DATABASE_URL="$pg_url" cargo test --locked -p tracecast-server \
  --test destinations --test auth_isolation --test workspaces_keys --test delivery --test postgres \
  --test dashboard

step "official OpenRouter SDK against the real server"
TRACECAST_BIN="$PWD/target/debug/tracecast" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest tests/sdk -q -p no:cacheprovider

step "OTLP ingest: real openai instrumentations exporting to the real server"
TRACECAST_BIN="$PWD/target/debug/tracecast" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest tests/otlp_ingest -q -p no:cacheprovider

step "official OpenAI Python and Node SDKs and @openrouter/sdk through the gateway"
# openai 7.60.0 and @openrouter/sdk 1.3.19, pinned by the lock file; needs Node.js 20+.
npm ci --prefix tests/gateway_sdk/node --no-audit --no-fund --loglevel=error
TRACECAST_BIN="$PWD/target/debug/tracecast" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest tests/gateway_sdk -q -p no:cacheprovider

step "web dashboard in headless Chromium: the seven flows of issue 16, axe-core on every page"
# playwright-core 1.65.2 and axe-core 4.14.1, pinned by the lock file; the browser is Debian's
# chromium (scripts/install-test-deps.sh), or CHROMIUM=/path/to/chrome.
npm ci --prefix tests/dashboard --no-audit --no-fund --loglevel=error
TRACECAST_BIN="$PWD/target/debug/tracecast" node --test tests/dashboard/dashboard.test.mjs

step "vendor validators: exporters' golden payloads against the platforms' own models"
if compgen -G "tests/vendors/test_*.py" >/dev/null; then
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest tests/vendors -q -p no:cacheprovider
fi
