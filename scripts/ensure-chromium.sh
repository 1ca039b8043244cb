#!/usr/bin/env bash
# Makes sure a Chromium for the browser tests (test/e2e) is installed.
# - already there (CHROMIUM_PATH, /usr/bin/chromium, chromium-browser or google-chrome): prints its path, exit 0;
# - missing, running as root on Debian/Ubuntu: apt-get installs the `chromium` package;
# - missing and not root (or no apt-get): prints what to install and exits 1.
set -euo pipefail

find_chromium() {
  local c
  for c in "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if path="$(find_chromium)"; then
  echo "chromium: $path"
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: not found, installing the Debian package 'chromium' (this takes a few minutes)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  if path="$(find_chromium)"; then
    echo "chromium: $path"
    exit 0
  fi
  echo "chromium: apt-get install chromium finished but no chromium binary was found" >&2
  exit 1
fi

cat >&2 <<'EOF'
chromium: not found, and it cannot be installed from here (needs root and apt-get).
The browser tests (test/e2e) need it. Install it with:
    sudo apt-get update && sudo apt-get install -y chromium
or point CHROMIUM_PATH at an existing Chromium/Chrome binary.
EOF
exit 1
