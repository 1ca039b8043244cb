/**
 * The TFJS → ONNX face-model converter: idempotent cache, and numerical parity of every converted
 * graph with the original TFJS graph (pure-JS CPU backend) on a fixture image.
 *
 * Tolerance: for each output tensor, max |onnx − tfjs| ≤ 1e-4 + 1e-5 · max |tfjs|
 * (float32 accumulation-order differences only; a wrong layout or weight is off by orders more).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { convertFaceModels, FACE_MODELS, type FaceModelName } from '../../models/face/convert.ts';
import { decodeModel } from '../../models/face/onnx-proto.ts';
import { halfToFloat } from '../../models/face/tfjs-graph.ts';
import { loadReferenceModel, runReference } from './tfjs-reference.ts';

const FIX = new URL('../fixtures/', import.meta.url);
const ATOL = 1e-4;
const RTOL = 1e-5;

test('float16 decoding', () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
});

test('converter writes ONNX opset 17 files with a sidecar and skips when up to date', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xpl-models-'));
  try {
    const lines: string[] = [];
    const first = await convertFaceModels({ cacheDir: dir, names: ['blazeface', 'iris'], log: (l) => lines.push(l) });
    assert.deepEqual(first.map((r) => r.skipped), [false, false]);
    assert.ok(lines.some((l) => /blazeface: wrote/.test(l)), 'progress output names the written file');
    const model = decodeModel(readFileSync(join(dir, 'blazeface.onnx')));
    assert.equal(model.opsetImport[0].version, 17);
    assert.equal(model.graph.input[0].name, 'input');
    assert.deepEqual(model.graph.output.map((o: { name: string }) => o.name).sort(), ['Identity', 'Identity_1', 'Identity_2', 'Identity_3']);
    const side = JSON.parse(readFileSync(join(dir, 'blazeface.onnx.json'), 'utf8'));
    assert.match(side.sourceHash, /^[0-9a-f]{64}$/);
    const mtime = statSync(join(dir, 'blazeface.onnx')).mtimeMs;

    const second = await convertFaceModels({ cacheDir: dir, names: ['blazeface', 'iris'] });
    assert.deepEqual(second.map((r) => r.skipped), [true, true]);
    assert.equal(statSync(join(dir, 'blazeface.onnx')).mtimeMs, mtime, 'an up-to-date file is not rewritten');

    // a stale sidecar (source changed) triggers a re-conversion
    writeFileSync(join(dir, 'iris.onnx.json'), JSON.stringify({ ...side, sourceHash: '0'.repeat(64) }));
    const third = await convertFaceModels({ cacheDir: dir, names: ['blazeface', 'iris'] });
    assert.deepEqual(third.map((r) => r.skipped), [true, false]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function fixtureInput(file: string, size: number, crop: { left: number; top: number; width: number; height: number } | null, range: '01' | '11'): Promise<Float32Array> {
  let img = sharp(new URL(file, FIX).pathname);
  if (crop) img = img.extract(crop);
  const { data } = await img.resize(size, size, { fit: 'fill' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const x = new Float32Array(size * size * 3);
  for (let i = 0; i < x.length; i++) x[i] = range === '11' ? data[i] / 127.5 - 1 : data[i] / 255;
  return x;
}

// inputs: the astronaut portrait (face around x 170–330, y 60–260), cropped as each model expects
const CASES: Record<FaceModelName, { size: number; crop: { left: number; top: number; width: number; height: number } | null; range: '01' | '11' }> = {
  blazeface: { size: 256, crop: null, range: '11' },
  facemesh: { size: 192, crop: { left: 150, top: 50, width: 210, height: 210 }, range: '01' },
  iris: { size: 64, crop: { left: 185, top: 105, width: 64, height: 64 }, range: '01' },
  faceres: { size: 224, crop: { left: 150, top: 50, width: 210, height: 210 }, range: '01' },
};

for (const name of FACE_MODELS) {
  test(`converted ${name} matches the TFJS reference on a fixture image`, async () => {
    const [conv] = await convertFaceModels({ names: [name] });
    const c = CASES[name];
    const x = await fixtureInput('astronaut.png', c.size, c.crop, c.range);
    const sess = await ort.InferenceSession.create(conv.path, { intraOpNumThreads: 1 });
    const got = await sess.run({ [conv.inputs[0].name]: new ort.Tensor('float32', x, [1, c.size, c.size, 3]) });
    const ref = await runReference(await loadReferenceModel(name), x, [1, c.size, c.size, 3], conv.outputs);
    for (const out of conv.outputs) {
      const a = got[out].data as Float32Array;
      const b = ref[out];
      assert.equal(a.length, b.length, `${name}/${out}: element count`);
      let maxDiff = 0;
      let maxAbs = 0;
      for (let i = 0; i < b.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
        maxAbs = Math.max(maxAbs, Math.abs(b[i]));
      }
      assert.ok(Number.isFinite(maxDiff) && maxAbs > 0, `${name}/${out}: reference output is degenerate`);
      assert.ok(maxDiff <= ATOL + RTOL * maxAbs, `${name}/${out}: max diff ${maxDiff} > ${ATOL} + ${RTOL}·${maxAbs}`);
    }
    await sess.release();
  });
}
