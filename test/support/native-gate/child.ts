/**
 * `node --import tsx child.ts terminate|exit MODEL DELAY_MS`: starts the busy worker through the
 * server's spawnWorker and, DELAY_MS after it is ready, stops it mid-run: worker.terminate() then
 * a normal exit, or process.exit() with the worker still running (what --test-force-exit does).
 */
import { spawnWorker } from '../../../server/workers/rpc.ts';

const [mode, model, delay] = process.argv.slice(2);
const worker = spawnWorker(new URL('./worker.ts', import.meta.url));
worker.postMessage(model);
worker.once('error', (err) => {
  console.error(`worker failed: ${err.message}`);
  process.exit(3);
});
worker.once('message', async () => {
  await new Promise((r) => setTimeout(r, Number(delay)));
  if (mode === 'terminate') {
    await worker.terminate();
    console.log('terminated');
  } else {
    process.exit(0);
  }
});
