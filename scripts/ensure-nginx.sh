#!/usr/bin/env bash
# Makes sure nginx is installed for the reverse-proxy test (test/edge/tls.test.ts, deploy/nginx/).
# - already there (NGINX_PATH or nginx on PATH / in /usr/sbin): prints its path, exit 0;
# - missing, running as root on Debian/Ubuntu: apt-get installs the `nginx` package (the test
#   runs its own nginx on loopback with its own config; the package's service is not used);
# - missing and not root (or no apt-get): prints what to install and exits 1.
set -euo pipefail

find_nginx() {
  local c
  for c in "${NGINX_PATH:-}" "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if path="$(find_nginx)"; then
  echo "nginx: $path"
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "nginx: not found, installing the Debian package 'nginx'"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nginx >/dev/null
  if path="$(find_nginx)"; then
    echo "nginx: $path"
    exit 0
  fi
  echo "nginx: apt-get install nginx finished but no nginx binary was found" >&2
  exit 1
fi

cat >&2 <<'EOF'
nginx: not found, and it cannot be installed from here (needs root and apt-get).
The reverse-proxy test (test/edge/tls.test.ts) needs it. Install it with:
    sudo apt-get update && sudo apt-get install -y nginx
or point NGINX_PATH at a nginx binary.
EOF
exit 1
