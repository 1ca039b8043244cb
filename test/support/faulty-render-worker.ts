/**
 * A render worker that fails on request, for testing RenderHost's recovery. It speaks the real
 * worker's protocol; `arm` makes the next render crash the thread or never answer. Its output
 * frame's first luma byte carries the set-up it received (portrait's first red byte + the
 * expression gain × 10), so a test can check that a restarted worker was set up again.
 */
import { parentPort } from 'node:worker_threads';
import { allocI420, toWire, type RgbaImage } from '../../server/media/frame.ts';
import type { RendererOptions } from '../../server/renderers/types.ts';
import { serveRpc, withTransfer } from '../../server/workers/rpc.ts';

let options: RendererOptions | undefined;
let portraitRed = 0;
let gain = 0;
let armed: 'crash' | 'hang' | null = null;

serveRpc(parentPort!, {
  init(a: { options: RendererOptions; portrait: RgbaImage }) {
    options = a.options;
    portraitRed = a.portrait.data[0];
    return { renderer: 'faulty' };
  },
  setParams(a: { expressionGain?: number }) {
    if (a.expressionGain !== undefined) gain = a.expressionGain;
    return true;
  },
  arm(a: { mode: 'crash' | 'hang' }) {
    armed = a.mode;
    return true;
  },
  async render(a: { frame: { timestamp: number } }) {
    if (armed === 'crash') process.exit(3);
    if (armed === 'hang') await new Promise(() => {});
    const out = allocI420(options!.outputWidth, options!.outputHeight, a.frame.timestamp);
    out.data[0] = portraitRed + gain * 10;
    const wire = toWire(out);
    return withTransfer({ frame: wire, ms: 0, renderMs: 0, backgroundMs: 0, faceFound: null }, [wire.buffer]);
  },
  dispose() {
    return true;
  },
});
