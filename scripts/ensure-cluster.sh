#!/usr/bin/env bash
# Makes sure HAProxy and Redis are installed, for the scale-out tests (test/cluster) and the
# local multi-node launcher (deploy/local): Debian's `haproxy` and `redis-server` (which brings
# redis-cli). Nothing is started here; the tests start their own instances on loopback ports.
# - both there (on PATH, or HAPROXY_PATH / REDIS_SERVER_PATH): prints their paths, exit 0;
# - missing, running as root on Debian/Ubuntu: apt-get installs the missing packages;
# - missing and not root (or no apt-get): prints what to install and exits 1.
set -euo pipefail

find_bin() {
  local override="$1" name="$2" c
  for c in "$override" "$(command -v "$name" 2>/dev/null || true)" "/usr/sbin/$name" "/usr/bin/$name"; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

missing=()
find_bin "${HAPROXY_PATH:-}" haproxy >/dev/null || missing+=(haproxy)
find_bin "${REDIS_SERVER_PATH:-}" redis-server >/dev/null || missing+=(redis-server)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "cluster tools: installing the Debian package(s) ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    cat >&2 <<EOT
cluster tools: missing ${missing[*]}, and they cannot be installed from here (needs root and apt-get).
The scale-out tests (test/cluster) need them. Install them with:
    sudo apt-get update && sudo apt-get install -y haproxy redis-server
or point HAPROXY_PATH / REDIS_SERVER_PATH at existing binaries.
EOT
    exit 1
  fi
fi

haproxy="$(find_bin "${HAPROXY_PATH:-}" haproxy)" || { echo "cluster tools: haproxy still missing after apt-get" >&2; exit 1; }
redis="$(find_bin "${REDIS_SERVER_PATH:-}" redis-server)" || { echo "cluster tools: redis-server still missing after apt-get" >&2; exit 1; }
echo "haproxy: $haproxy"
echo "redis-server: $redis"
