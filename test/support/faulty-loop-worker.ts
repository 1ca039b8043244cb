/**
 * A loop worker that fails on request, for testing LoopHost's recovery. It speaks the real
 * worker's protocol (RPC + media port); `arm` makes the next frame crash the thread, block its
 * event loop, or report a stalled render. Each frame is answered with an 'out' message whose one
 * byte carries the set-up the worker received (portrait's first red byte + the expression gain ×
 * 10), so a test can check that a restarted worker was set up again.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import type { RgbaImage } from '../../server/media/frame.ts';
import type { ToWorker, FromWorker } from '../../server/loop/messages.ts';
import { serveRpc } from '../../server/workers/rpc.ts';

let portraitRed = 0;
let gain = 0;
let armed: 'crash' | 'block' | 'stall' | null = null;

function answer(port: MessagePort, msg: ToWorker): void {
  if (msg.t !== 'frame') return;
  if (armed === 'crash') process.exit(3);
  if (armed === 'block') for (;;);
  if (armed === 'stall') {
    armed = null;
    port.postMessage({ t: 'stalled', ms: 9999 } satisfies FromWorker);
    return;
  }
  const data = new Uint8Array([portraitRed + gain * 10]).buffer;
  const out: FromWorker = { t: 'out', data, keyframe: msg.keyframe, rtp: msg.rtp, arrival: msg.arrival, times: { decodeMs: 0, renderMs: 0, backgroundMs: 0, encodeMs: 0 }, held: false };
  port.postMessage(out, [data]);
}

serveRpc(parentPort!, {
  boot: () => true,
  init(a: { portrait: RgbaImage; params: { expressionGain?: number }; media: MessagePort }) {
    portraitRed = a.portrait.data[0];
    gain = a.params.expressionGain ?? 0;
    a.media.on('message', (m: ToWorker) => answer(a.media, m));
    return { renderer: 'faulty' };
  },
  arm(a: { mode: 'crash' | 'block' | 'stall' }) {
    armed = a.mode;
    return true;
  },
  dispose: () => true,
});
