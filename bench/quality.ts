/**
 * `npm run bench:quality`: the mesh-warp quality figures of the eval harness on the project's
 * own driving video (Grace Hopper performing the default script: yaw, pitch, roll, blinks, smile,
 * mouth opening) animating the default portrait (the astronaut), plus a contact sheet (driving |
 * output) at docs/images/quality-contact.png.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadImage, synthesiseDriving } from '../eval/make-driving.ts';
import { evaluate } from '../eval/metrics.ts';
import { markdown } from '../eval/run.ts';
import { contactSheet } from '../eval/plot.ts';
import { defaultScript } from '../eval/script.ts';
import { machine, writeSection } from './report.ts';

const fixture = (f: string) => fileURLToPath(new URL(`../test/fixtures/${f}`, import.meta.url));
const IMAGES = fileURLToPath(new URL('../docs/images/', import.meta.url));

const fps = 30;
const script = defaultScript(fps, 11);
process.stderr.write(`bench:quality: synthesising ${script.length} driving frames…\n`);
const frames = await synthesiseDriving(await loadImage(fixture('grace_hopper.jpg')), script, 640, 480, fps);
process.stderr.write('bench:quality: rendering and scoring…\n');
const t0 = performance.now();
const r = await evaluate({ portrait: await loadImage(fixture('astronaut.png')), frames, script, size: 512 });
const seconds = (performance.now() - t0) / 1000;
mkdirSync(IMAGES, { recursive: true });
await contactSheet(frames, r.outputs, 30, `${IMAGES}quality-contact.png`);
const md = markdown(r, 'mesh-warp: astronaut (default portrait) driven by the scripted Grace Hopper video');
console.log(md);
await writeSection(
  'quality',
  'mesh-warp quality (`npm run bench:quality`)',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}; ${frames.length} frames (11 s at 30 fps, 640×480 driving, 512² output), scored in ${seconds.toFixed(0)} s. A synthetic driver made by the mesh-warp rig itself: the figures on real footage are in [QUALITY.md](QUALITY.md) (\`npm run eval:all\`).

${md}

![driving | output, every 30th frame](images/quality-contact.png)`,
);
