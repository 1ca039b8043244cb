/** The renderer registry: name → factory. Factories load lazily so a session pays only for its own renderer. */
import type { RendererName } from '../config.ts';
import { XplError } from '../errors.ts';
import type { Renderer, RendererOptions } from './types.ts';

const FACTORIES: Record<RendererName, (opts: RendererOptions) => Promise<Renderer>> = {
  passthrough: async (opts) => (await import('./passthrough/index.ts')).createPassthroughRenderer(opts),
  'mesh-warp': async (opts) => (await import('./mesh-warp/index.ts')).createMeshWarpRenderer(opts),
  'xportrait-lcm': async (opts) => (await import('./xportrait-lcm/index.ts')).createXportraitLcmRenderer(opts),
};

export async function createRenderer(name: RendererName, opts: RendererOptions): Promise<Renderer> {
  const factory = FACTORIES[name];
  if (!factory) throw new XplError('renderer_unavailable', `unknown renderer "${name}"`);
  return factory(opts);
}
