#!/usr/bin/env bash
# Installs what pip cannot: Debian's prometheus and prometheus-alertmanager (for the
# observability tests and the demo). Java and Maven are expected on the machine.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || need+=(prometheus-alertmanager)
for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "system-deps: $tool is required (install a JDK 17+ and Maven)" >&2; exit 1; }
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${need[*]} (not root: install them with apt to run those tests)" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's packages start services through systemd/init: we run the binaries ourselves.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  pkill -x "$svc" 2>/dev/null || true
done
