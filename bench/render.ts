/**
 * mesh-warp render timings, single thread: warp only (targets + rasterisation) and the whole
 * render() (driver tracking from I420 + warp), output 512² and 1280×720, driver 640×480.
 * Prints Markdown.
 *
 *   tsx bench/render.ts [--iters 100]
 */
import sharp from 'sharp';
import { allocI420, type I420Frame } from '../server/media/frame.ts';
import { createMeshWarpRenderer } from '../server/renderers/mesh-warp/index.ts';
import { computeTargets } from '../server/renderers/mesh-warp/rig.ts';
import { warpFrame } from '../server/renderers/mesh-warp/warp.ts';
import { synthesiseDriving } from '../eval/make-driving.ts';
import { defaultScript, motionForFrame } from '../eval/script.ts';
import { machine, percentile, printer, writeSection } from './report.ts';

/** Everything printed also goes into this benchmark's section of docs/BENCHMARKS.md. */
const { print, lines } = printer();

const iters = Number(process.argv[process.argv.indexOf('--iters') + 1] || 100) || 100;
const pct = percentile;
const load = async (f: string) => {
  const { data, info } = await sharp(new URL(`../test/fixtures/${f}`, import.meta.url).pathname).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
};
// astronaut's face sits high: a 16:9 'cover' crop cuts it, so 720p uses grace_hopper as the portrait
const portraits = { '512²': await load('astronaut.png'), '720p': await load('grace_hopper.jpg') };
const script = defaultScript(30, 4);
const driving: I420Frame[] = await synthesiseDriving(await load('grace_hopper.jpg'), script, 640, 480, 30);
print('| output | warp only p50/p95 | render() incl. driver tracking p50/p95 | of which tracking p50 |');
print('| --- | --- | --- | --- |');
for (const [name, w, h] of [['512²', 512, 512], ['720p', 1280, 720]] as const) {
  const r = await createMeshWarpRenderer({ outputWidth: w, outputHeight: h });
  const p = await r.prepare(portraits[name]);
  const out = allocI420(w, h);
  const warp: number[] = [];
  for (let i = 0; i < iters + 5; i++) {
    const m = motionForFrame(script[i % script.length]);
    const t0 = performance.now();
    computeTargets(p.rig, m, p.targets);
    warpFrame(p.rig, p.targets, out, p.scratch);
    if (i >= 5) warp.push(performance.now() - t0);
  }
  const full: number[] = [];
  const track: number[] = [];
  for (let i = 0; i < iters + 5; i++) {
    const f = driving[i % driving.length];
    const t0 = performance.now();
    await r.render(p, { frame: { ...f, timestamp: i * 33.3 }, index: i }, out);
    if (i >= 5) {
      full.push(performance.now() - t0);
      track.push(r.lastTimings.track);
    }
  }
  const f2 = (v: number[]): string => `${pct(v, 50).toFixed(2)} / ${pct(v, 95).toFixed(2)} ms`;
  print(`| ${name} | ${f2(warp)} | ${f2(full)} | ${pct(track, 50).toFixed(2)} ms |`);
  await r.dispose();
}

await writeSection('render', 'mesh-warp render (`npm run bench:render`)', `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}.\n\n${lines.join('\n')}`);
