// WebGPU without a GPU: onnxruntime's WebGPU provider (Dawn) runs on any Vulkan driver, and
// Chromium ships SwiftShader, a software one. Tests point the Vulkan loader at it — unless the
// caller already chose a driver (VK_ICD_FILENAMES / VK_DRIVER_FILES), e.g. a real GPU's.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

const CANDIDATES = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json', '/opt/google/chrome/vk_swiftshader_icd.json'];

function swiftShaderIcd(): string | null {
  const fromEnv = process.env.CHROMIUM_PATH ? join(dirname(realpathSync(process.env.CHROMIUM_PATH)), 'vk_swiftshader_icd.json') : null;
  for (const p of [fromEnv, ...CANDIDATES]) if (p && existsSync(p)) return p;
  return null;
}

function vulkanLoader(): boolean {
  const r = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  return /libvulkan\.so\.1 /.test(r.stdout ?? '');
}

/**
 * Must run before the first WebGPU session of the process (Dawn reads the variables once).
 * Returns a skip reason when no Vulkan driver can be had, else null.
 */
export function useSoftwareWebGpu(): string | null {
  if (!vulkanLoader()) return "no Vulkan loader (libvulkan.so.1): run 'bash scripts/ensure-vulkan.sh'";
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return null;
  const icd = swiftShaderIcd();
  if (!icd) return "no SwiftShader Vulkan driver (it ships with Chromium: run 'bash scripts/ensure-chromium.sh')";
  process.env.VK_ICD_FILENAMES = icd;
  return null;
}
