#!/usr/bin/env bash
# The device check of the torch engine, prepared to run as it is on one H100/H200 with PyTorch
# (CUDA) preinstalled and no network, budgeted to about 6 minutes (two runs fit in 15 GPU-minutes):
#
#   bash scripts/gpu-check.sh             # the GPU run: writes its sections of docs/BENCHMARKS.md
#   bash scripts/gpu-check.sh --dry-run   # the same script with the tiny model on the CPU (no GPU needed)
#
# 1. torch engine (needs only Python with torch, numpy, msgpack — no Node): the full-size random
#    model at 512², fp16, in the worker process, measured through its socket by a Python client:
#    per-stage ms, fps at 1/2/4 steps with stream batch off/on, 1/2/4 sessions batched, device
#    memory, host↔device bytes per frame (models/xportrait/engine/gpucheck.py).
# 2. only if the time allows and everything it needs is there — else one line says what is missing:
#    the onnx engine on WebGPU with a random pack of the same architecture at $XPL_GPU_CHECK_WEBGPU_SIZE
#    (default 128², the largest whose export fits the budget), side by side with the torch engine at
#    that size. Needs Node 20 + node_modules (or the bundle from scripts/gpu-check-bundle.sh, carried
#    as .cache/gpu-check/bundle.tar.gz), python's onnx module (to export the pack), a Vulkan loader
#    and the GPU's Vulkan driver (ICD).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=""
[ "${1:-}" = "--dry-run" ] && DRY="--dry-run"
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "gpu-check [$(elapsed)s] $*"; }

PY="${XPL_PYTHON:-$(command -v python3 || true)}"
[ -n "$DRY" ] && [ -x /usr/bin/python3 ] && PY="${XPL_PYTHON:-/usr/bin/python3}"
if [ -z "$PY" ] || ! "$PY" -c 'import torch, numpy, msgpack' 2>/dev/null; then
  echo "gpu-check: need a python3 with torch, numpy and msgpack (set XPL_PYTHON); found: ${PY:-none}" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
say "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'))"

# ---------------------------------------------------------------------------------------- 1. torch
BUDGET=200
[ -n "$DRY" ] && BUDGET=90
timeout -k 10 $((BUDGET + 120)) "$PY" -m models.xportrait.engine.gpucheck $DRY --budget "$BUDGET"

# ---------------------------------------------------------------------------------------- 2. WebGPU
LIMIT=${XPL_GPU_CHECK_LIMIT:-360}   # seconds into the run after which part 2 is not started
SIZE=${XPL_GPU_CHECK_WEBGPU_SIZE:-128}
skip() { say "WebGPU side by side skipped: $*"; exit 0; }
[ "$(elapsed)" -lt "$LIMIT" ] || skip "$(elapsed) s used, over the ${LIMIT} s budget for starting it"

NODE="$(command -v node || true)"
if [ -z "$NODE" ] || [ ! -d node_modules/onnxruntime-node ]; then
  if [ -f .cache/gpu-check/bundle.tar.gz ]; then
    say "unpacking the carried Node bundle"
    mkdir -p .cache/gpu-check/unpacked
    tar -xzf .cache/gpu-check/bundle.tar.gz -C .cache/gpu-check/unpacked
    [ -d node_modules ] || cp -r .cache/gpu-check/unpacked/node_modules node_modules
    NODE="${NODE:-$PWD/.cache/gpu-check/unpacked/node/bin/node}"
    export LD_LIBRARY_PATH="$PWD/.cache/gpu-check/unpacked/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi
[ -n "$NODE" ] && [ -x "$NODE" ] || skip "no node (install Node 20, or carry .cache/gpu-check/bundle.tar.gz made by scripts/gpu-check-bundle.sh)"
[ -d node_modules/onnxruntime-node ] || skip "no node_modules/onnxruntime-node (npm install, or carry the bundle)"
"$PY" -c 'import onnx' 2>/dev/null || skip "python has no onnx module to export the WebGPU pack (pip/apt python3-onnx)"
# (grep reads all of ldconfig's output: with -q it could exit first and fail the pipe)
VULKAN_LIB="${LD_LIBRARY_PATH:-}"
if ! ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' > /dev/null && ! ls "${VULKAN_LIB%%:*}/libvulkan.so.1" >/dev/null 2>&1; then
  skip "no Vulkan loader (libvulkan.so.1: apt-get install libvulkan1, or carry the bundle)"
fi
PRECISION=fp16
if [ -n "$DRY" ]; then
  ICD=/usr/lib/chromium/vk_swiftshader_icd.json
  [ -f "$ICD" ] || skip "dry run: no SwiftShader ICD ($ICD; apt-get install chromium)"
  export VK_ICD_FILENAMES="$ICD"
  PRECISION=fp32   # SwiftShader has no shader-f16
else
  ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json >/dev/null 2>&1 \
    || skip "no NVIDIA Vulkan driver (nvidia_icd.json): this container has CUDA but not the graphics driver"
fi

PACK="$(mktemp -d)/pack"
if [ -n "$DRY" ]; then
  EXPORT=(--tiny --seed 1 --no-fp16)
  SIZE=64
else
  EXPORT=(--random --seed 1 --image-size "$SIZE")
fi
say "exporting the onnx pack (${EXPORT[*]}) to $PACK"
timeout -k 10 150 "$PY" -m models.xportrait.export "${EXPORT[@]}" --out "$PACK" > /dev/null 2> "$PACK.log" \
  || skip "the pack export did not finish within 150 s (see $PACK.log)"
say "bench:lcm on WebGPU"
# dry run: SwiftShader emulates the GPU on the CPU (seconds per frame): one step count, 2 frames,
# and not written over the documented SwiftShader section
if [ -n "$DRY" ]; then WSTEPS=1; WFRAMES=2; WLIMIT=300; else WSTEPS=1,2; WFRAMES=20; WLIMIT=120; fi
OUT="$(timeout -k 10 "$WLIMIT" "$NODE" --import tsx bench/lcm.ts --pack "$PACK" --ep webgpu --precision "$PRECISION" \
  --steps "$WSTEPS" --frames "$WFRAMES" ${DRY:+--no-write} 2>&1)" \
  || skip "bench:lcm on WebGPU failed: $(echo "$OUT" | tail -n 3 | tr '\n' ' ')"
echo "$OUT" | grep 'on webgpu' > /dev/null || skip "onnxruntime fell back to the CPU (no WebGPU adapter): $(echo "$OUT" | grep -m1 'fell back' || true)"
FPS="$(echo "$OUT" | sed -n 's/^steps \([0-9]*\): \([0-9.]*\) fps.*/\1:\2/p' | paste -sd, -)"
say "WebGPU fps per steps: $FPS"
timeout -k 10 120 "$PY" -m models.xportrait.engine.gpucheck $DRY --compare "$FPS" --image-size "$SIZE" --frames "$WFRAMES"
rm -rf "$(dirname "$PACK")"
say "done"
