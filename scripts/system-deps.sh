#!/usr/bin/env bash
# Installs what the test suite runs against when it is missing: PostgreSQL and Redis servers
# (started by the tests on free loopback ports), Chromium (driven by Playwright), wrk (the
# benchmarks' load generator), npm (which fetches the pinned axe-core the browser tests
# check accessibility with) and promtool (which checks and unit-tests the Prometheus alerting
# rules of docs/prometheus/).
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
# Debian ships promtool only inside the Prometheus server's package; the server is stopped below.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

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
# The packaged services are not needed: the tests start their own servers on free ports, and
# promtool needs no server at all. So nothing installed here is left running or listening.
for package in "${missing[@]}"; do
  case "$package" in postgresql | redis-server | prometheus) ;; *) continue ;; esac
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$package" >/dev/null 2>&1 || true
  fi
  # Without systemd, the package's init script may have started it (unless policy-rc.d forbade
  # it): stop it and keep it from starting at boot.
  if [ ! -d /run/systemd/system ] && [ -x "/etc/init.d/$package" ]; then
    "/etc/init.d/$package" stop >/dev/null 2>&1 || true
    update-rc.d "$package" disable >/dev/null 2>&1 || true
  fi
done
