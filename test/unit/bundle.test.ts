/**
 * Worker entries bundled at start (server/workers/bundle.ts): a bundled worker runs from the
 * bundle, sees its own source location in import.meta.url (paths computed from it stay right),
 * loads modules it imports dynamically from chunks, and spawns nested workers from their bundles.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { bundleWorkers, workerBundles } from '../../server/workers/bundle.ts';
import { RpcClient } from '../../server/workers/rpc.ts';
import { ID_MODULO } from '../support/pattern.ts';

const PROBE = new URL('../support/bundle-probe-worker.ts', import.meta.url);

test('a bundled worker runs from its bundle and behaves as the TypeScript it came from', async () => {
  await bundleWorkers([PROBE]);
  const bundle = workerBundles[PROBE.href];
  assert.ok(bundle && existsSync(bundle), `bundle written: ${bundle}`);
  assert.doesNotMatch(readFileSync(bundle, 'utf8'), /ID_MODULO = /, 'the lazily imported module is in a chunk of its own, not in the entry');
  const w = new RpcClient<{ where: () => string; bundled: () => boolean; lazy: () => number; nested: () => string }>(PROBE, 'probe');
  try {
    const own = new URL('.', PROBE).href;
    assert.equal(await w.call('bundled', undefined), true, 'the worker runs the bundle, not the TypeScript through tsx');
    assert.equal(await w.call('where', undefined), own, 'import.meta.url is the source file’s');
    assert.equal(await w.call('lazy', undefined), ID_MODULO, 'a dynamic import loads from its chunk');
    assert.equal(await w.call('nested', undefined), `${own} true`, 'a nested worker starts from the bundle too and sees its source location');
  } finally {
    await w.close();
  }
});
