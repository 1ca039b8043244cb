// npm test: background — two exports compared, no clock to keep.
// Exporter: --random flag conflicts, and the low-memory export path used at full size (stage
// views, export order, freeing sub-networks) gives the same graphs as the default path — checked
// on the tiny model, since a full-size export needs ~15 GB of RAM and minutes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { pythonSkipReason, runPy, maxAbsDiff } from './helpers.ts';

const skip = pythonSkipReason();
if (skip) console.log(`# skipping X-Portrait --random tests: ${skip}`);
const work = mkdtempSync(join(tmpdir(), 'xpl-rand-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('export CLI: --random conflicts with --tiny, --checkpoint and --lcm-lora', { skip }, () => {
  const cases: [string[], RegExp][] = [
    [['--random', '--tiny'], /--random .* and --tiny .* exclude each other/],
    [['--random', '--checkpoint', 'x.th'], /--random .* cannot be combined with --checkpoint/],
    [['--random', '--lcm-lora', 'x.safetensors'], /--lcm-lora needs --checkpoint/],
  ];
  for (const [args, re] of cases) {
    const r = runPy(['-m', 'models.xportrait.export', ...args, '--out', join(work, 'never')]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});

test('low-memory export path (full size) == default path, on the tiny model', { skip }, async () => {
  const stages = 'reference,control';   // reference: the attn1-only view; control is exported first
  const base = ['-m', 'models.xportrait.export', '--tiny', '--seed', '3', '--no-fp16', '--stages', stages];
  const a = join(work, 'default'), b = join(work, 'lowmem');
  const ra = runPy([...base, '--out', a], 180_000, { XPL_EXPORT_LOW_MEMORY: '0' });
  assert.equal(ra.status, 0, ra.stderr);
  const rb = runPy([...base, '--out', b], 180_000, { XPL_EXPORT_LOW_MEMORY: '1' });
  assert.equal(rb.status, 0, rb.stderr);
  assert.match(rb.stderr, /released appearance_control_model/, 'low-memory path not taken');
  const ma = JSON.parse(readFileSync(join(a, 'manifest.json'), 'utf8'));
  const mb = JSON.parse(readFileSync(join(b, 'manifest.json'), 'utf8'));
  assert.deepEqual(Object.keys(mb.stages), stages.split(','), 'manifest keeps the asked stage order');
  for (const k of ['geometry', 'stages', 'scheduler', 'temporal_cache', 'layouts']) assert.deepEqual(mb[k], ma[k], k);
  let seed = 7;
  const rnd = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 - 0.5; };
  for (const [name, st] of Object.entries<any>(ma.stages)) {
    const feeds: Record<string, ort.Tensor> = {};
    for (const i of st.inputs) {
      const shape = i.shape.map((d: number | string) => (d === 'batch' ? 2 : d));
      const n = shape.reduce((x: number, y: number) => x * y, 1);
      feeds[i.name] = i.dtype === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from([999n, 259n]), shape)
        : new ort.Tensor('float32', Float32Array.from({ length: n }, () => (i.name === 'cache_mask' ? 1 : rnd())), shape);
    }
    const sa = await ort.InferenceSession.create(join(a, st.files.fp32));
    const sb = await ort.InferenceSession.create(join(b, st.files.fp32));
    const [oa, ob] = [await sa.run(feeds), await sb.run(feeds)];
    for (const o of st.outputs) {
      const d = maxAbsDiff(oa[o.name].data as Float32Array, ob[o.name].data as Float32Array);
      assert.ok(d <= 1e-6, `${name}.${o.name}: low-memory path differs by ${d}`);
    }
    await sa.release(); await sb.release();
  }
});
