/**
 * A worker for the bundling test: reports where it thinks it lives (from import.meta.url), loads a
 * sibling module on demand, and spawns a nested worker the same way the loop worker spawns codecs.
 */
import { parentPort } from 'node:worker_threads';
import { RpcClient, serveRpc } from '../../server/workers/rpc.ts';

serveRpc(parentPort!, {
  where: () => new URL('.', import.meta.url).href,
  // The bundle's banner defines a module-level require; an ES module loaded through tsx has none.
  bundled: () => typeof require === 'function',
  lazy: async () => (await import('./pattern.ts')).ID_MODULO,
  async nested() {
    const child = new RpcClient<{ where: () => string; bundled: () => boolean }>(new URL('./bundle-probe-worker.ts', import.meta.url), 'nested');
    try {
      return `${await child.call('where', undefined)} ${await child.call('bundled', undefined)}`;
    } finally {
      await child.close();
    }
  },
});
