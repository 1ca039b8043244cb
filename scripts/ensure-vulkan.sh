#!/usr/bin/env bash
# Makes sure the Vulkan loader (libvulkan.so.1) is installed: the WebGPU tests of xportrait-lcm run
# onnxruntime's WebGPU provider on SwiftShader, the software Vulkan driver that ships with
# Chromium (/usr/lib/chromium/vk_swiftshader_icd.json), and Dawn needs the loader to reach it.
# - present: prints where, exit 0;
# - missing, running as root on Debian/Ubuntu: apt-get installs `libvulkan1`;
# - missing and not root (or no apt-get): prints what to install and exits 1.
set -euo pipefail

find_loader() {
  # awk reads to the end: an early exit could kill ldconfig with SIGPIPE, which pipefail reports
  ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 / && !found { print $NF; found = 1 }'
}

if path="$(find_loader)" && [ -n "$path" ]; then
  echo "vulkan loader: $path"
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "vulkan loader: not found, installing the Debian package 'libvulkan1'"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq libvulkan1 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libvulkan1 >/dev/null; }
  if path="$(find_loader)" && [ -n "$path" ]; then
    echo "vulkan loader: $path"
    exit 0
  fi
  echo "vulkan loader: apt-get install libvulkan1 finished but libvulkan.so.1 was not found" >&2
  exit 1
fi

cat >&2 <<'MSG'
vulkan loader: libvulkan.so.1 not found, and it cannot be installed from here (needs root and apt-get).
The WebGPU tests (test/lcm/webgpu.test.ts) need it. Install it with:
    sudo apt-get update && sudo apt-get install -y libvulkan1
MSG
exit 1
