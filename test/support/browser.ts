/**
 * Headless Chromium for the browser tests: finding (or installing) Debian's Chromium, launching
 * it with a fake camera, and reading frames back from a <video> element of the page.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { allocI420, type I420Frame, type RgbaImage } from '../../server/media/frame.ts';
import { readPatternId } from './pattern.ts';
import { REPO_ROOT } from './server.ts';

/** Finds Chromium, installing it through scripts/ensure-chromium.sh when that is possible. */
export function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  const found = () => candidates.find((c) => c && existsSync(c)) ?? null;
  if (found()) return found();
  try {
    execFileSync('bash', [join(REPO_ROOT, 'scripts/ensure-chromium.sh')], { stdio: 'inherit' });
  } catch {
    return null;
  }
  return found();
}

export const CHROMIUM_MISSING = 'Chromium is missing and could not be installed (needs root + apt-get): run `sudo apt-get install -y chromium` or set CHROMIUM_PATH';

/** Launches headless Chromium; with `camera`, its fake camera plays that .y4m file in a loop. */
export function launchChromium(executablePath: string, opts: { camera?: string } = {}): Promise<Browser> {
  const camera = opts.camera ? ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${opts.camera}`] : [];
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      ...camera,
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/**
 * Browser-side: draws the <video> into a canvas and returns its pixels as base64, RGBA or luma
 * (BT.601 limited range, the inverse of the decoder's YUV→RGB), with the RTP timestamp of the
 * frame shown (from requestVideoFrameCallback, watched from the first grab on; null until a frame
 * was presented since). A string, not a function, so the TS loader's helpers never end up in the
 * page.
 */
const grabScript = (selector: string, luma: boolean) => `(() => {
  const v = document.querySelector(${JSON.stringify(selector)});
  if (!v.xplWatched && v.requestVideoFrameCallback) {
    v.xplWatched = true;
    const seen = (now, meta) => {
      v.xplRtp = meta.rtpTimestamp;
      v.requestVideoFrameCallback(seen);
    };
    v.requestVideoFrameCallback(seen);
  }
  const w = v.videoWidth, h = v.videoHeight;
  if (!w || !h) return null;
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  const g = c.getContext('2d', { willReadFrequently: true });
  const rtp = v.xplRtp ?? null;
  g.drawImage(v, 0, 0, w, h);
  let px = g.getImageData(0, 0, w, h).data;
  if (${luma}) {
    const y = new Uint8Array(w * h);
    for (let i = 0, j = 0; i < y.length; i++, j += 4) y[i] = Math.round(16 + (65.481 * px[j] + 128.553 * px[j + 1] + 24.966 * px[j + 2]) / 255);
    px = y;
  }
  let bin = '';
  for (let i = 0; i < px.length; i += 0x8000) bin += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
  return { w, h, rtp, b64: btoa(bin) };
})()`;

type Grabbed = { w: number; h: number; rtp: number | null; b64: string } | null;

/** The video's current frame as I420 with its luma filled in (chroma neutral); null before the first frame. */
export async function grabLuma(page: Page, selector: string): Promise<I420Frame | null> {
  const r = (await page.evaluate(grabScript(selector, true))) as Grabbed;
  if (!r) return null;
  const f = allocI420(r.w, r.h);
  f.data.set(Buffer.from(r.b64, 'base64'));
  f.data.fill(128, r.w * r.h);
  return f;
}

/** The test pattern's id in the video's current frame; null before the first frame or where it cannot be read. */
export async function grabId(page: Page, selector: string): Promise<number | null> {
  const f = await grabLuma(page, selector);
  return f ? readPatternId(f) : null;
}

/**
 * The video's current frame as RGBA, with its RTP timestamp where the page has seen one (for a
 * session's output: the timestamp of the driving frame it was made from, which the server keeps);
 * null before the first frame.
 */
export async function grabRgba(page: Page, selector: string): Promise<(RgbaImage & { rtp: number | null }) | null> {
  const r = (await page.evaluate(grabScript(selector, false))) as Grabbed;
  return r && { width: r.w, height: r.h, rtp: r.rtp, data: new Uint8Array(Buffer.from(r.b64, 'base64')) };
}
