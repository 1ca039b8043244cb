/**
 * Framing: the output shows the portrait's head by default, for each shape of portrait (close-up,
 * head-and-shoulders, full-length with a small face, painting), keeps the whole face inside the
 * frame when the head turns ±30°, and follows `framing` / `zoom` (also as server config).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../server/config.ts';
import { XplError } from '../../server/errors.ts';
import { eulerToMat } from '../../server/face/pose.ts';
import { framingRect } from '../../server/renderers/mesh-warp/framing.ts';
import { preparePortrait, reframePortrait } from '../../server/renderers/mesh-warp/portrait.ts';
import { computeTargets, identityMotion } from '../../server/renderers/mesh-warp/rig.ts';
import { fixture, loadRgba } from '../face/support.ts';

const SIZE = 256;

/** Width of the face (its landmarks' extent) as a fraction of the output width, and the landmarks' bounds. */
function faceOf(x: ArrayLike<number>, y: ArrayLike<number>): { fraction: number; minX: number; maxX: number; minY: number; maxY: number } {
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (let i = 0; i < 468; i++) {
    minX = Math.min(minX, x[i]);
    maxX = Math.max(maxX, x[i]);
    minY = Math.min(minY, y[i]);
    maxY = Math.max(maxY, y[i]);
  }
  return { fraction: (maxX - minX) / SIZE, minX, maxX, minY, maxY };
}

test('framingRect: head is 2.3 face sizes around the face, bust wider, zoom magnifies, a crop stays in the picture', () => {
  const face = { x: 400, y: 300, width: 100, height: 120 };
  const head = framingRect(2000, 1500, face, 512, 512, { framing: 'head', zoom: 1 });
  assert.ok(Math.abs(head.width - 276) < 1 && Math.abs(head.height - 276) < 1, `head crop ${head.width}×${head.height}`);
  assert.ok(head.x < face.x && head.x + head.width > face.x + face.width, 'the face is inside the crop horizontally');
  assert.ok(head.y < face.y && head.y + head.height > face.y + face.height, 'and vertically');
  const bust = framingRect(2000, 1500, face, 512, 512, { framing: 'bust', zoom: 1 });
  assert.ok(bust.width > head.width * 1.4, 'bust shows more');
  const zoomed = framingRect(2000, 1500, face, 512, 512, { framing: 'head', zoom: 2 });
  assert.ok(Math.abs(zoomed.width - head.width / 2) < 1, 'zoom 2 halves the crop');
  const wide = framingRect(2000, 1500, face, 1280, 720, { framing: 'head', zoom: 1 });
  assert.ok(Math.abs(wide.width / wide.height - 1280 / 720) < 1e-6, 'the crop has the output aspect');
  // a face near the picture's corner: the crop shifts to stay inside the picture
  const corner = framingRect(2000, 1500, { x: 10, y: 10, width: 100, height: 120 }, 512, 512, { framing: 'head', zoom: 1 });
  assert.ok(corner.x >= 0 && corner.y >= 0, `crop inside the picture (${corner.x}, ${corner.y})`);
  // a close-up bigger than the picture allows: the crop shrinks to the picture, not below 1.45 face sizes
  const close = framingRect(400, 300, { x: 100, y: 50, width: 200, height: 240 }, 512, 512, { framing: 'head', zoom: 1 });
  assert.ok(close.height <= 348 && close.height >= 1.45 * 240 - 1, `close-up crop ${close.height}`);
  const full = framingRect(2000, 1500, face, 512, 512, { framing: 'full', zoom: 1 });
  assert.deepEqual([full.width, full.height], [1500, 1500], 'full: the largest square of the picture');
});

const PORTRAITS = [
  ['closeup.jpg', 'close-up'],
  ['astronaut.png', 'head and shoulders'],
  ['fulllength.jpg', 'full-length, face 7 % of the width'],
  ['mona_lisa.jpg', 'painting'],
] as const;

for (const [file, what] of PORTRAITS) {
  test(`head framing of a ${what} (${file}): face ≥ 0.3 of the width, inside the frame at ±30° yaw`, async () => {
    const p = await preparePortrait(await loadRgba(fixture(file)), SIZE, SIZE, { framing: 'head', zoom: 1 });
    const rest = faceOf(p.rig.sx, p.rig.sy);
    assert.ok(rest.fraction >= 0.3 && rest.fraction <= 0.65, `face ${rest.fraction.toFixed(2)} of the width`);
    for (const yaw of [-30, 30]) {
      const m = identityMotion();
      m.rotation = eulerToMat(yaw, 0, 0);
      computeTargets(p.rig, m, p.targets);
      const f = faceOf(p.targets.x, p.targets.y);
      assert.ok(f.minX >= 0 && f.maxX <= SIZE && f.minY >= 0 && f.maxY <= SIZE, `yaw ${yaw}°: face inside the frame (${f.minX.toFixed(0)}..${f.maxX.toFixed(0)} × ${f.minY.toFixed(0)}..${f.maxY.toFixed(0)})`);
    }
  });
}

test('full framing shows the whole picture; a live change re-frames from the source', async () => {
  const p = await preparePortrait(await loadRgba(fixture('fulllength.jpg')), SIZE, SIZE, { framing: 'full', zoom: 1 });
  const full = faceOf(p.rig.sx, p.rig.sy).fraction;
  assert.ok(full < 0.15, `full-length photo, whole: face ${full.toFixed(3)} of the width`);
  await reframePortrait(p, { framing: 'bust', zoom: 1 });
  const bust = faceOf(p.rig.sx, p.rig.sy).fraction;
  assert.ok(bust > 0.22 && bust < 0.36, `bust: face ${bust.toFixed(2)}`);
  await reframePortrait(p, { framing: 'bust', zoom: 1.5 });
  const zoomed = faceOf(p.rig.sx, p.rig.sy).fraction;
  assert.ok(Math.abs(zoomed / bust - 1.5) < 0.15, `zoom 1.5: face ${zoomed.toFixed(2)} (× ${(zoomed / bust).toFixed(2)})`);
});

test('config: --framing and --zoom are validated, default head at zoom 1', () => {
  const d = loadConfig([], {});
  assert.ok(!d.help && d.config.framing === 'head' && d.config.zoom === 1);
  const b = loadConfig(['--framing', 'bust', '--zoom', '1.5'], {});
  assert.ok(!b.help && b.config.framing === 'bust' && b.config.zoom === 1.5);
  assert.throws(() => loadConfig(['--framing', 'face'], {}), (e: unknown) => e instanceof XplError && e.code === 'bad_config' && /--framing/.test(e.message));
  assert.throws(() => loadConfig(['--zoom', '9'], {}), (e: unknown) => e instanceof XplError && /--zoom/.test(e.message));
});
