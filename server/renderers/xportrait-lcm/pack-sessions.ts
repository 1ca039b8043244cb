/** onnxruntime sessions for a pack's stages, on an execution provider. */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { gateOnnxRuntime } from '../../workers/native-gate.ts';
import type { StageName } from './pack-manifest.ts';

// A worker thread must not be stopped inside an onnxruntime call (see native-gate.ts).
gateOnnxRuntime(ort.InferenceSession);

// ORT's process-wide logger warns, for every WebGPU session, that shape ops were placed on the CPU
// (ORT does that on purpose); session-level severity does not reach that message. Failures still
// surface as exceptions.
ort.env.logLevel = 'error';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

function epOptions(ep: ExecutionProvider, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [ep === 'cpu' ? 'cpu' : ep],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
}

/**
 * Outputs kept on the device with WebGPU: the temporal cache, the denoised latent (re-noised and
 * decoded on the device), the reference K/V, the control residuals (consumed by denoise).
 */
const DEVICE_OUTPUTS: Partial<Record<StageName, string[]>> = { denoise: ['denoised', 'eps', 'cache_out', 'cache_mask_out'], denoise_window: ['denoised', 'eps', 'cache_out', 'cache_mask_out'], reference: ['ref_kv'], control: ['ctrl_res'] };

export async function createSession(dir: string, stage: StageName, file: string, ep: ExecutionProvider, threads: number): Promise<ort.InferenceSession> {
  const opts = epOptions(ep, threads);
  const deviceOutputs = ep === 'webgpu' ? DEVICE_OUTPUTS[stage] ?? [] : [];
  if (deviceOutputs.length) opts.preferredOutputLocation = Object.fromEntries(deviceOutputs.map((n) => [n, 'gpu-buffer' as const]));
  try {
    return await ort.InferenceSession.create(join(dir, file), opts);
  } catch (err) {
    const e = new Error(`stage "${stage}": onnxruntime could not load ${file} on ${ep}: ${(err as Error).message}`, { cause: err });
    (e as Error & { epFailure?: boolean }).epFailure = ep !== 'cpu';
    throw e;
  }
}
