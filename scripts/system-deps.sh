#!/usr/bin/env bash
# Installs what pip cannot, on Debian/Ubuntu: a JDK 17+ and Maven (to fetch and run Kafka),
# and Debian's prometheus (with promtool) and prometheus-alertmanager for the observability
# tests and the demo, and Debian's chromium for the live page's browser tests (Playwright
# drives it through executable_path; Playwright's own browser download is never used).
# We run those binaries ourselves on 127.0.0.1, so no service from the packages is left
# running. Without root it only checks and says what is missing.
# Binaries: /usr/bin/prometheus, /usr/bin/promtool, /usr/bin/prometheus-alertmanager, /usr/bin/amtool,
# /usr/bin/chromium.
set -euo pipefail

say() { echo "system-deps: $*" >&2; }
is_ci() { [[ "${CI:-}" =~ ^(1|true|TRUE|yes)$ ]]; }

java_ok() {
  command -v java >/dev/null || return 1
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$major" ] && [ "$major" -ge 17 ]
}

need=()
java_ok || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || need+=(prometheus-alertmanager)
command -v chromium >/dev/null || need+=(chromium)
# `make bench` only: wrk drives the ingest API benchmark's /check row.
if [ "${BENCH_DEPS:-}" = 1 ]; then command -v wrk >/dev/null || need+=(wrk); fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  say "missing: ${need[*]} (needs root and apt-get to install; install them yourself)"
  for pkg in "${need[@]}"; do
    case "$pkg" in
      openjdk-*|maven)
        say "a JDK 17+ and Maven are required to run Kafka: cannot continue"; exit 1 ;;
    esac
  done
  if is_ci; then
    say "CI=true: the Prometheus/Alertmanager and browser tests must not be skipped: failing"
    exit 1
  fi
  exit 0
fi

say "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep the packages' postinst scripts from starting services (the container convention);
# a policy already in place is left as it is.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

# Package daemons run as the `prometheus` user; ours run as whoever runs the tests.
daemons() { pgrep -u prometheus 2>/dev/null | sort || true; }
before=$(daemons)

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

# Anything a postinst started anyway (new processes of the `prometheus` user) is stopped
# by pid, so that ports 9090/9093 stay free for the binaries we start ourselves.
started=$(comm -13 <(echo "$before") <(daemons) | grep -v '^$' || true)
for pid in $started; do
  say "stopping $(ps -o comm= -p "$pid" 2>/dev/null || echo '?') (pid $pid) started by the package"
  kill "$pid" 2>/dev/null || true
done
[ -z "$started" ] || sleep 1
for pid in $started; do kill -9 "$pid" 2>/dev/null || true; done

java_ok || { say "java 17+ still missing after install"; exit 1; }
for tool in mvn prometheus promtool prometheus-alertmanager chromium; do
  command -v "$tool" >/dev/null || { say "$tool still missing after install"; exit 1; }
done
say "installed: ${need[*]}"
