/**
 * mesh-warp render timings, single thread: warp only (targets + rasterisation) and the whole
 * render() (driver tracking from I420 + warp), output 512² and 1280×720, driver 640×480.
 * Prints Markdown and writes its section of docs/BENCHMARKS.md.
 *
 *   tsx bench/render.ts [--iters 100] [--against DIR]
 *
 * `--against DIR` times another checkout's renderer in the same run, interleaved frame by frame
 * with this one (same portraits, same motions), and reports the ratio — the way to state what a
 * change costs on a shared, noisy machine. Make DIR from a commit with
 * `mkdir DIR && git archive COMMIT server models | tar -x -C DIR && ln -s $PWD/node_modules $PWD/.cache DIR/`.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { allocI420, type I420Frame, type RgbaImage } from '../server/media/frame.ts';
import { createMeshWarpRenderer, type MeshWarpPortrait } from '../server/renderers/mesh-warp/index.ts';
import { computeTargets } from '../server/renderers/mesh-warp/rig.ts';
import { warpFrame } from '../server/renderers/mesh-warp/warp.ts';
import { synthesiseDriving } from '../eval/make-driving.ts';
import { defaultScript, motionForFrame } from '../eval/script.ts';
import { machine, percentile, printer, writeSection } from './report.ts';

/** Everything printed also goes into this benchmark's section of docs/BENCHMARKS.md. */
const { print, lines } = printer();

const arg = (k: string): string | undefined => {
  const i = process.argv.indexOf(`--${k}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const iters = Number(arg('iters') ?? 100) || 100;
const against = arg('against');
const pct = percentile;
const load = async (f: string): Promise<RgbaImage> => {
  const { data, info } = await sharp(new URL(`../test/fixtures/${f}`, import.meta.url).pathname).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
};

/** One renderer build to time: its factory and its warp-only steps. */
interface Build {
  name: string;
  create: typeof createMeshWarpRenderer;
  targets: typeof computeTargets;
  warp: typeof warpFrame;
}
const builds: Build[] = [{ name: 'this', create: createMeshWarpRenderer, targets: computeTargets, warp: warpFrame }];
if (against) {
  const base = pathToFileURL(resolve(against, 'server/renderers/mesh-warp/')).href;
  const [idx, rig, warp] = await Promise.all([import(`${base}/index.ts`), import(`${base}/rig.ts`), import(`${base}/warp.ts`)]);
  builds.push({ name: 'against', create: idx.createMeshWarpRenderer, targets: rig.computeTargets, warp: warp.warpFrame });
}

// astronaut's face sits high: a 16:9 'cover' crop cuts it, so 720p uses grace_hopper as the portrait
const portraits = { '512²': await load('astronaut.png'), '720p': await load('grace_hopper.jpg') };
const script = defaultScript(30, 4);
const driving: I420Frame[] = await synthesiseDriving(await load('grace_hopper.jpg'), script, 640, 480, 30);
const f2 = (v: number[]): string => `${pct(v, 50).toFixed(2)} / ${pct(v, 95).toFixed(2)} ms`;
print(`| output | renderer | warp only p50/p95 | render() incl. driver tracking p50/p95 | of which tracking p50 |${against ? ' warp / render() vs the other build (ratio of p50s) |' : ''}`);
print(`| --- | --- | --- | --- | --- |${against ? ' --- |' : ''}`);
for (const [name, w, h] of [['512²', 512, 512], ['720p', 1280, 720]] as const) {
  const runs = await Promise.all(
    builds.map(async (b) => {
      const r = await b.create({ outputWidth: w, outputHeight: h });
      // the other build's portrait has the same rig / targets / scratch fields (typed as this one's)
      const p: MeshWarpPortrait = await r.prepare(portraits[name]);
      return { b, r, p, out: allocI420(w, h), warp: [] as number[], full: [] as number[], track: [] as number[] };
    }),
  );
  // interleaved: each frame is timed on every build in turn, so load on the machine hits all alike
  for (let i = 0; i < iters + 5; i++) {
    const m = motionForFrame(script[i % script.length]);
    for (const x of runs) {
      const t0 = performance.now();
      x.b.targets(x.p.rig, m, x.p.targets);
      x.b.warp(x.p.rig, x.p.targets, x.out, x.p.scratch);
      if (i >= 5) x.warp.push(performance.now() - t0);
    }
  }
  for (let i = 0; i < iters + 5; i++) {
    const f = driving[i % driving.length];
    for (const x of runs) {
      const t0 = performance.now();
      await x.r.render(x.p, { frame: { ...f, timestamp: i * 33.3 }, index: i }, x.out);
      if (i >= 5) {
        x.full.push(performance.now() - t0);
        x.track.push(x.r.lastTimings.track);
      }
    }
  }
  for (const x of runs) {
    const ratio = against && x.b.name === 'this' ? ` ${(pct(x.warp, 50) / pct(runs[1].warp, 50)).toFixed(2)}× / ${(pct(x.full, 50) / pct(runs[1].full, 50)).toFixed(2)}× |` : against ? ' 1 |' : '';
    print(`| ${name} | ${x.b.name === 'this' ? 'this checkout' : `\`${against}\``} | ${f2(x.warp)} | ${f2(x.full)} | ${pct(x.track, 50).toFixed(2)} ms |${ratio}`);
    await x.r.dispose();
  }
}

await writeSection('render', 'mesh-warp render (`npm run bench:render`)', `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}${against ? `, against \`${against}\` in the same run (interleaved)` : ''}.\n\n${lines.join('\n')}`);
