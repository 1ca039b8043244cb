#!/usr/bin/env bash
# `npm test`: installs the system packages the tests need when they are missing (Chromium for the
# browser tests, and its software Vulkan driver for the WebGPU tests with the Vulkan loader;
# coturn and nginx for the TURN and reverse-proxy tests; HAProxy and Redis for the scale-out tests;
# Debian's python3-torch/onnx for the exporter tests), makes sure the face models
# are converted, then runs every test file with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== checking system packages"
bash scripts/ensure-chromium.sh
bash scripts/ensure-vulkan.sh
bash scripts/ensure-coturn.sh
bash scripts/ensure-nginx.sh
bash scripts/ensure-cluster.sh
PYTHON="$(bash scripts/ensure-python.sh | tail -n 1)"
export XPL_PYTHON="$PYTHON"

if [ -f models/face/convert.ts ]; then
  echo "== face models"
  node --import tsx models/face/convert.ts
fi

echo "== SDK types (client/sdk and the examples that use them)"
node node_modules/typescript/bin/tsc -p client/sdk

mapfile -t files < <(find test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
echo "== running ${#files[@]} test files"
# --test-force-exit: a test that fails before its clean-up must not leave a handle that keeps its
# file's process (and so the whole run) alive; the outer timeout bounds the run regardless.
exec timeout -k 30 1800 node --import tsx --test --test-concurrency=1 --test-force-exit --test-timeout=600000 --test-reporter=spec "${files[@]}" "$@"
