/**
 * Face stage timings, single thread: BlazeFace detect, FaceMesh, Iris (one eye), full tracker
 * frame — on a 512² portrait and on a 1280×720 frame (portrait letterboxed into it). Prints Markdown.
 *
 *   tsx bench/face.ts [--iters 100]
 */
import sharp from 'sharp';
import { FaceDetector, roiFromDetection } from '../server/face/detector.ts';
import { FaceMesher } from '../server/face/mesh.ts';
import { FaceTracker } from '../server/face/tracker.ts';
import type { FaceImage } from '../server/face/types.ts';
import { machine, percentile, printer, writeSection } from './report.ts';

/** Everything printed also goes into this benchmark's section of docs/BENCHMARKS.md. */
const { print, lines } = printer();

const iters = Number(process.argv[process.argv.indexOf('--iters') + 1] || 100) || 100;
const pct = percentile;
async function time(fn: () => Promise<unknown>): Promise<[number, number]> {
  for (let i = 0; i < 5; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return [pct(t, 50), pct(t, 95)];
}
const src = new URL('../test/fixtures/astronaut.png', import.meta.url).pathname;
const images: Array<[string, FaceImage]> = [];
for (const [name, w, h] of [['512²', 512, 512], ['720p', 1280, 720]] as const) {
  const { data } = await sharp(src).resize(w, h, { fit: 'contain', background: '#808080' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  images.push([name, { kind: 'rgba', width: w, height: h, data: new Uint8Array(data) }]);
}
const det = await FaceDetector.create({ threads: 1 });
const mesher = await FaceMesher.create({ threads: 1 });
print(`| input | detect p50/p95 | mesh p50/p95 | iris (1 eye) p50/p95 | tracker frame (mesh + 1 iris, eyes alternate + analysis) p50/p95 |`);
print(`| --- | --- | --- | --- | --- |`);
for (const [name, img] of images) {
  const [d] = await det.detect(img);
  const roi = roiFromDetection(d);
  const { landmarks } = await mesher.landmarks(img, roi);
  const a = await time(() => det.detect(img));
  const b = await time(() => mesher.landmarks(img, roi));
  const c = await time(() => mesher.iris(img, landmarks, 'left'));
  const tr = await FaceTracker.create({ threads: 1 });
  let ts = 0;
  const e = await time(() => tr.trackImage(img, (ts += 33)));
  const f = (x: [number, number]): string => `${x[0].toFixed(2)} / ${x[1].toFixed(2)} ms`;
  print(`| ${name} | ${f(a)} | ${f(b)} | ${f(c)} | ${f(e)} |`);
}

await writeSection('face', 'Face tracking (`npm run bench:face`)', `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.\n\n${lines.join('\n')}`);
