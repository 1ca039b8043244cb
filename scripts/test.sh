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
# Three lanes, marked on a line of their own near the top of each file:
# - "// npm test: alone — why": files that time things (frame rates, latency, CPU cost, memory)
#   run one at a time, as every file once did;
# - "// npm test: background — why": pure compute with no clock to keep (exporters, parity
#   checks) runs one at a time beside the alone lane at the lowest CPU priority (SCHED_IDLE: it
#   runs only when nothing else wants the CPU; nice 19 where chrt is missing), so it takes only
#   the core that the alone lane leaves idle (about one of two). Not the WebGPU file: SwiftShader's
#   threads beside the browser tests cost them more than the priority alone keeps away (the mouth
#   correlation of test/e2e/animate.test.ts fell from 0.86 to 0.74–0.79 in a trial);
# - the rest (errors, protocol, servers with short deadlines) runs two at a time, first.
mapfile -t alone < <(grep -l '^// npm test: alone' "${files[@]}")
mapfile -t background < <(grep -l '^// npm test: background' "${files[@]}")
mapfile -t shared < <(grep -L -e '^// npm test: alone' -e '^// npm test: background' "${files[@]}")
echo "== running ${#files[@]} test files: ${#shared[@]} two at a time, then ${#alone[@]} alone with ${#background[@]} in the background"
# --test-force-exit: a test that fails before its clean-up must not leave a handle that keeps its
# file's process (and so the whole run) alive; the timeouts bound each lane regardless.
run_lane() {
  local name=$1 concurrency=$2 started=$SECONDS rc=0
  shift 2
  timeout -k 30 1200 node --import tsx --test --test-concurrency="$concurrency" --test-force-exit --test-timeout=600000 --test-reporter=spec "$@" || rc=$?
  # Each lane's wall time, so that a run near the 15-minute budget shows which lane grew.
  echo "== $name lane: $# files, $concurrency at a time: $((SECONDS - started)) s"
  return "$rc"
}
# The tiny X-Portrait pack that the xportrait-lcm files share is exported once per machine (about a
# minute of one core); started here, it runs beside the first files instead of a waiting file
# holding a slot of the shared lane idle (test/support/tiny-pack.ts).
node --import tsx test/support/tiny-pack.ts > /dev/null 2>&1 &
tiny=$!
status=0
run_lane shared 2 "${shared[@]}" "$@" || status=$?
# The background lane's report is printed whole once it ends, not interleaved with the alone lane's.
# Its subshell lowers its own priority, which every process it starts inherits.
bg=""
if [ "${#background[@]}" -gt 0 ]; then
  bglog="$(mktemp -t xpl-background-lane.XXXXXX)"
  trap 'rm -f "$bglog"' EXIT
  (
    chrt --idle -p 0 "$BASHPID" 2> /dev/null || renice -n 19 -p "$BASHPID" > /dev/null || true
    run_lane background 1 "${background[@]}" "$@"
  ) > "$bglog" 2>&1 &
  bg=$!
fi
run_lane alone 1 "${alone[@]}" "$@" || status=$?
if [ -n "$bg" ]; then
  bgstatus=0
  wait "$bg" || bgstatus=$?
  cat "$bglog"
  [ "$bgstatus" -eq 0 ] || status=$bgstatus
fi
# Long done by now (the shared lane's lcm files wait for the same export): nothing is left behind.
wait "$tiny" || true
exit "$status"
