/** The renderer registry: name → factory. Factories load lazily so a session pays only for its own renderer. */
import type { Transferable } from 'node:worker_threads';
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Renderer, RendererOptions } from './types.ts';

const FACTORIES: Record<RendererName, () => Promise<(opts: RendererOptions) => Promise<Renderer>>> = {
  passthrough: async () => (await import('./passthrough/index.ts')).createPassthroughRenderer,
  'mesh-warp': async () => (await import('./mesh-warp/index.ts')).createMeshWarpRenderer,
  'xportrait-lcm': async () => (await import('./xportrait-lcm/index.ts')).createXportraitLcmRenderer,
};

/** Loads a renderer's code without creating one (a warm worker does this ahead of its first session). */
export async function preloadRenderer(name: RendererName): Promise<void> {
  await FACTORIES[name]?.();
}

/**
 * Main-thread set-up a renderer needs before its worker creates it: xportrait-lcm gets a fresh
 * port to its stream in the shared pack worker (onnx engine), or the socket of the supervised torch
 * worker process (torch engine; started if needed). Returns the options to send to the worker and
 * the objects to transfer with them.
 */
export async function rendererChannels(name: RendererName, options: RendererOptions): Promise<{ options: RendererOptions; transfer: Transferable[] }> {
  if (name === 'xportrait-lcm' && options.lcm?.engine === 'torch') {
    const { ensureTorchWorker } = await import('./xportrait-lcm/torch/host.ts');
    return { options: { ...options, torchSocket: (await ensureTorchWorker(options.lcm)).socket }, transfer: [] };
  }
  if (name !== 'xportrait-lcm' || !options.pack) return { options, transfer: [] };
  const { connectPack } = await import('./xportrait-lcm/pack-host.ts');
  const packPort = await connectPack(options.pack);
  return { options: { ...options, packPort }, transfer: [packPort] };
}

export async function createRenderer(name: RendererName, opts: RendererOptions): Promise<Renderer> {
  const load = FACTORIES[name];
  if (!load) throw new XplError('renderer_unavailable', `unknown renderer "${name}"`);
  return (await load())(opts);
}
