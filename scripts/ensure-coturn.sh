#!/usr/bin/env bash
# Makes sure a TURN server for the NAT-traversal test (test/edge/turn.test.ts) is installed: Debian's coturn.
# - already there (TURNSERVER_PATH or turnserver on PATH / in /usr/bin): prints its path, exit 0;
# - missing, running as root on Debian/Ubuntu: apt-get installs the `coturn` package (the test
#   starts its own turnserver on loopback; the package's service stays disabled);
# - missing and not root (or no apt-get): prints what to install and exits 1.
set -euo pipefail

find_turnserver() {
  local c
  for c in "${TURNSERVER_PATH:-}" "$(command -v turnserver 2>/dev/null || true)" /usr/bin/turnserver; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if path="$(find_turnserver)"; then
  echo "coturn: $path"
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "coturn: not found, installing the Debian package 'coturn'"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq coturn >/dev/null
  if path="$(find_turnserver)"; then
    echo "coturn: $path"
    exit 0
  fi
  echo "coturn: apt-get install coturn finished but no turnserver binary was found" >&2
  exit 1
fi

cat >&2 <<'EOF'
coturn: not found, and it cannot be installed from here (needs root and apt-get).
The TURN test (test/edge/turn.test.ts) needs it. Install it with:
    sudo apt-get update && sudo apt-get install -y coturn
or point TURNSERVER_PATH at a turnserver binary.
EOF
exit 1
