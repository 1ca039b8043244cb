#!/usr/bin/env bash
# Find a Python 3 that imports torch, onnx, numpy and msgpack (the X-Portrait exporter's and the
# torch engine worker's needs).
# Prefers /usr/bin/python3 (Debian's python3-torch); honours $XPL_PYTHON first when set.
# When none is found and we run as root on a Debian/Ubuntu system, installs
# python3-torch python3-onnx python3-numpy python3-msgpack with apt-get; otherwise prints what to install.
# The interpreter's path is the last line on stdout; progress goes to stderr. Exit 1 if none.
set -euo pipefail

check() { "$1" -c 'import torch, onnx, numpy, msgpack' >/dev/null 2>&1; }

candidates=()
[ -n "${XPL_PYTHON:-}" ] && candidates+=("$XPL_PYTHON")
candidates+=(/usr/bin/python3)
command -v python3 >/dev/null 2>&1 && candidates+=("$(command -v python3)")

for py in "${candidates[@]}"; do
  if [ -x "$py" ] && check "$py"; then
    echo "$py"
    exit 0
  fi
done

PKGS="python3-torch python3-onnx python3-numpy python3-msgpack"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-python: no interpreter imports torch+onnx+numpy+msgpack; installing $PKGS with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $PKGS >&2
  if check /usr/bin/python3; then
    echo /usr/bin/python3
    exit 0
  fi
  echo "ensure-python: installed $PKGS but /usr/bin/python3 still cannot import torch, onnx, numpy and msgpack" >&2
  exit 1
fi

cat >&2 <<MSG
ensure-python: no Python interpreter here imports torch, onnx, numpy and msgpack.
Install them (Debian/Ubuntu, as root):
  apt-get update && apt-get install -y $PKGS
or point XPL_PYTHON at an interpreter that has torch (>= 1.13), onnx, numpy and msgpack.
MSG
exit 1
