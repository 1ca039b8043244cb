import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadImage } from '../../eval/make-driving.ts';
import { preparePortrait } from '../../server/renderers/mesh-warp/index.ts';

test('a tall portrait prepared for a wide (16:9) output keeps its face in frame', async () => {
  // A centred 16:9 crop of the 512×600 Grace Hopper portrait cuts through her face; the fit must follow the face.
  const p = await preparePortrait(await loadImage('test/fixtures/grace_hopper.jpg'), 1280, 720);
  assert.equal(p.width, 1280);
  assert.equal(p.height, 720);
  const xs = p.rig.sx.subarray(0, 468);
  const ys = p.rig.sy.subarray(0, 468);
  const minY = Math.min(...ys);
  const maxY = Math.max(...ys);
  assert.ok(minY > 0 && maxY < 720, `face landmarks inside the frame (y ${minY.toFixed(0)}..${maxY.toFixed(0)})`);
  const cy = (minY + maxY) / 2;
  assert.ok(Math.abs(cy - 360) < 180, `face roughly centred vertically (${cy.toFixed(0)})`);
  assert.ok(Math.max(...xs) - Math.min(...xs) > 100, 'a face of a plausible size');
});
