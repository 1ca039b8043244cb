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
# Two lanes. Files that time things (frame rates, latency, CPU cost, memory: they say so on their
# first line, "// npm test: alone — why") run one at a time, as every file once did; the others
# (compute, exporters, errors, protocol) run two at a time, which on two cores takes about a
# fifth off the whole run.
mapfile -t alone < <(grep -l '^// npm test: alone' "${files[@]}")
mapfile -t shared < <(grep -L '^// npm test: alone' "${files[@]}")
echo "== running ${#files[@]} test files: ${#shared[@]} two at a time, then ${#alone[@]} alone"
# --test-force-exit: a test that fails before its clean-up must not leave a handle that keeps its
# file's process (and so the whole run) alive; the timeouts bound each lane regardless.
run_lane() {
  local concurrency=$1 started=$SECONDS rc=0
  shift
  timeout -k 30 1200 node --import tsx --test --test-concurrency="$concurrency" --test-force-exit --test-timeout=600000 --test-reporter=spec "$@" || rc=$?
  # Each lane's wall time, so that a run near the 15-minute budget shows which lane grew.
  echo "== lane of $# files, $concurrency at a time: $((SECONDS - started)) s"
  return "$rc"
}
# The tiny X-Portrait pack that the xportrait-lcm files share is exported once per machine (about a
# minute of one core); started here, it runs beside the first files instead of a waiting file
# holding a slot of the shared lane idle (test/support/tiny-pack.ts).
node --import tsx test/support/tiny-pack.ts > /dev/null 2>&1 &
tiny=$!
status=0
run_lane 2 "${shared[@]}" "$@" || status=$?
run_lane 1 "${alone[@]}" "$@" || status=$?
# Long done by now (the shared lane's lcm files wait for the same export): nothing is left behind.
wait "$tiny" || true
exit "$status"
