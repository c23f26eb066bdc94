#!/usr/bin/env bash
# System packages that integration tests need, installed once (idempotent; run as root or with
# sudo). scripts/test.sh calls this before `cargo test`.
#
# - clickhouse-server (Debian's 18.16): crates/tracecast-exporters/tests/clickhouse.rs starts a
#   real server on a free loopback port to check the HTTP protocol and authentication.
# - chromium: tests/dashboard drives the web dashboard in headless Chromium (playwright-core
#   with the system browser, /usr/bin/chromium).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
fi

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# The package installs the binary under /usr/bin; the test runs it with its own config and
# data directory, so the packaged service (if any) is never used.
if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ] && [ ! -x /usr/bin/clickhouse ]; then
  apt_install clickhouse-server
fi

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
