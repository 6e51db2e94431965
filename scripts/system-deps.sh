#!/usr/bin/env bash
# Installs what the test suite runs against when it is missing: PostgreSQL and Redis servers
# (started by the tests on free loopback ports), Chromium (driven by Playwright), wrk (the
# benchmarks' load generator) and npm (which fetches the pinned axe-core the browser tests
# check accessibility with).
# Needs root for apt-get; without it, prints what is missing and leaves the decision to the tests
# (which skip locally and fail in CI when a server is absent).
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi

command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The HTTP load generator of the benchmarks (C, so it leaves the cores to the server measured).
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # vendors axe-core (scripts/vendor-axe.sh)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]} (run as root to install them with apt-get)" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged services are not needed: the tests start their own servers on free ports.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now postgresql redis-server >/dev/null 2>&1 || true
fi
