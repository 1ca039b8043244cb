// npm test: background — pure compute (matrix products in child processes), no clock to keep
/**
 * A worker thread stopped while it is inside an onnxruntime-node call aborts the whole process
 * ("terminate called after throwing an instance of 'Napi::Error'", SIGABRT): that took down a test
 * file now and then after its tests had passed. server/workers/native-gate.ts makes terminate() and
 * the process exit wait for the call in flight. Each case runs in a child process, whose worker is
 * always inside a run, a create or a release when it is stopped; without the gate nearly every one
 * of them aborted.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeModel, TensorDataType, type OnnxValueInfo } from '../../models/face/onnx-proto.ts';

const N = 512;
const child = fileURLToPath(new URL('../support/native-gate/child.ts', import.meta.url));
let dir = '';
let model = '';

/** y = x·w·w·…·w (8 products), about 20 ms of one core per run. */
function writeModel(path: string): void {
  const vi = (name: string): OnnxValueInfo => ({ name, type: { tensorType: { elemType: TensorDataType.FLOAT, shape: { dim: [{ dimValue: N }, { dimValue: N }] } } } });
  const node = Array.from({ length: 8 }, (_, i) => ({ name: `mm${i}`, opType: 'MatMul', input: [i ? `h${i - 1}` : 'x', 'w'], output: [i === 7 ? 'y' : `h${i}`], attribute: [] }));
  const w = new Float32Array(N * N).fill(1 / N);
  writeFileSync(path, encodeModel({ name: 'busy', node, initializer: [{ name: 'w', dims: [N, N], dataType: TensorDataType.FLOAT, rawData: new Uint8Array(w.buffer) }], input: [vi('x')], output: [vi('y')] }, { opset: 13, producer: 'xpl-test', producerVersion: '1' }));
}

function stop(mode: 'terminate' | 'exit', delayMs: number) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, mode, model, String(delayMs)], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

describe('stopping a worker thread inside onnxruntime-node', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xpl-gate-'));
    model = join(dir, 'busy.onnx');
    writeModel(model);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const delay of [30, 170, 310]) {
    it(`terminate() ${delay} ms into the runs waits for the call in flight: no abort`, () => {
      const r = stop('terminate', delay);
      assert.doesNotMatch(r.err, /Napi::Error/);
      assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.err}`);
      assert.equal(r.status, 0, r.err);
      assert.match(r.out, /terminated/);
    });

    it(`process.exit() ${delay} ms into the runs, the worker still running: no abort`, () => {
      const r = stop('exit', delay);
      assert.doesNotMatch(r.err, /Napi::Error/);
      assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.err}`);
      assert.equal(r.status, 0, r.err);
    });
  }
});
