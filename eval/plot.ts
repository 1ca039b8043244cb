/**
 * Pictures of one eval case: a per-frame plot of driver vs output (yaw, pitch, roll, mouth and eye
 * opening relative to neutral) drawn as SVG and rasterised by sharp, and a contact sheet of
 * driving | output frames.
 */
import sharp, { type OverlayOptions } from 'sharp';
import { i420ToRgba } from '../server/media/convert.ts';
import type { I420Frame } from '../server/media/frame.ts';
import type { FrameMetrics } from './metrics.ts';

interface Series {
  label: string;
  driver: Array<number | null>;
  output: Array<number | null>;
}

function path(values: Array<number | null>, x: (i: number) => number, y: (v: number) => number): string {
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
    pen = true;
  });
  return d;
}

/** Writes a PNG plot: one panel per series, driver (grey) vs output (orange), a dashed line at the cut. */
export async function plotFrames(frames: FrameMetrics[], file: string, opts: { title: string; cut?: number }): Promise<void> {
  const series: Series[] = [
    { label: 'yaw °', driver: frames.map((f) => f.driverPose?.yaw ?? null), output: frames.map((f) => f.outputPose?.yaw ?? null) },
    { label: 'pitch °', driver: frames.map((f) => f.driverPose?.pitch ?? null), output: frames.map((f) => f.outputPose?.pitch ?? null) },
    { label: 'roll °', driver: frames.map((f) => f.driverPose?.roll ?? null), output: frames.map((f) => f.outputPose?.roll ?? null) },
    { label: 'mouth Δ', driver: frames.map((f) => f.driverMouth), output: frames.map((f) => f.outputMouth) },
    { label: 'eyes Δ', driver: frames.map((f) => f.driverEye), output: frames.map((f) => f.outputEye) },
  ];
  const W = 900;
  const panelH = 110;
  const left = 70;
  const top = 28;
  const H = top + series.length * panelH + 20;
  const n = Math.max(2, frames.length);
  const x = (i: number): number => left + (i * (W - left - 10)) / (n - 1);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`;
  svg += `<rect width="${W}" height="${H}" fill="#fff"/><text x="${left}" y="18" font-size="14">${escapeXml(opts.title)} — driver (grey) vs output (orange)</text>`;
  series.forEach((s, k) => {
    const y0 = top + k * panelH;
    const all = [...s.driver, ...s.output].filter((v): v is number => v !== null && Number.isFinite(v));
    let lo = Math.min(0, ...all);
    let hi = Math.max(0, ...all);
    if (hi - lo < 1e-6) hi = lo + 1;
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
    const y = (v: number): number => y0 + panelH - 12 - ((v - lo) / (hi - lo)) * (panelH - 20);
    svg += `<rect x="${left}" y="${y0 + 4}" width="${W - left - 10}" height="${panelH - 12}" fill="none" stroke="#ccc"/>`;
    svg += `<line x1="${left}" x2="${W - 10}" y1="${y(0).toFixed(1)}" y2="${y(0).toFixed(1)}" stroke="#ddd"/>`;
    svg += `<text x="4" y="${y0 + panelH / 2}">${s.label}</text>`;
    svg += `<text x="${left - 4}" y="${y(hi - pad).toFixed(1)}" text-anchor="end" font-size="10">${(hi - pad).toFixed(2)}</text>`;
    svg += `<text x="${left - 4}" y="${y(lo + pad).toFixed(1)}" text-anchor="end" font-size="10">${(lo + pad).toFixed(2)}</text>`;
    svg += `<path d="${path(s.driver, x, y)}" fill="none" stroke="#888" stroke-width="1.5"/>`;
    svg += `<path d="${path(s.output, x, y)}" fill="none" stroke="#e8710a" stroke-width="1.5"/>`;
    if (opts.cut !== undefined) svg += `<line x1="${x(opts.cut)}" x2="${x(opts.cut)}" y1="${y0 + 4}" y2="${y0 + panelH - 8}" stroke="#c00" stroke-dasharray="4 3"/>`;
  });
  svg += `<text x="${left}" y="${H - 4}" font-size="10">frame →</text></svg>`;
  await sharp(Buffer.from(svg)).png().toFile(file);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

async function toPng(f: I420Frame, w: number): Promise<Buffer> {
  const rgba = { width: f.width, height: f.height, data: new Uint8Array(f.width * f.height * 4) };
  i420ToRgba(f, rgba);
  return sharp(Buffer.from(rgba.data.buffer, rgba.data.byteOffset, rgba.data.byteLength), { raw: { width: f.width, height: f.height, channels: 4 } })
    .resize(w, Math.round((f.height * w) / f.width))
    .png()
    .toBuffer();
}

/** Driving | output pairs of every `every`-th frame, `cols` pairs per row, each image `tw` px wide. */
export async function contactSheet(driving: I420Frame[], outputs: I420Frame[], every: number, path: string, opts: { cols?: number; tw?: number } = {}): Promise<void> {
  const tw = opts.tw ?? 192;
  const cols = opts.cols ?? 2;
  const dh = Math.round((driving[0].height * tw) / driving[0].width);
  const oh = Math.round((outputs[0].height * tw) / outputs[0].width);
  const rowH = Math.max(dh, oh);
  const idx = [];
  for (let k = 0; k < outputs.length; k += every) idx.push(k);
  const rows = Math.ceil(idx.length / cols);
  const comps: OverlayOptions[] = [];
  for (let j = 0; j < idx.length; j++) {
    const k = idx[j];
    const x = (j % cols) * (2 * tw + 16);
    const y = Math.floor(j / cols) * (rowH + 8);
    comps.push({ input: await toPng(driving[k], tw), left: x, top: y });
    comps.push({ input: await toPng(outputs[k], tw), left: x + tw, top: y });
  }
  await sharp({ create: { width: cols * (2 * tw + 16), height: rows * (rowH + 8), channels: 3, background: '#202020' } })
    .composite(comps)
    .png()
    .toFile(path);
}
