/**
 * YUV4MPEG2 (.y4m) files with 4:2:0 frames: what Chromium's fake camera plays in a loop
 * (`--use-file-for-fake-video-capture=FILE.y4m`) and what ffmpeg/x264 read and write.
 *
 * Only 8-bit 4:2:0 is supported (C420, C420jpeg, C420mpeg2, C420paldv, or no C tag); the three
 * differ in chroma siting only, which does not change the byte layout.
 */
import { open, readFile } from 'node:fs/promises';
import type { ByteQueue } from './byte-queue.ts';
import { i420Size, type I420Frame } from './frame.ts';

export interface Y4mHeader {
  width: number;
  height: number;
  /** Frames per second as a rational. */
  fpsNum: number;
  fpsDen: number;
  /** The colour-space tag, e.g. '420jpeg'. */
  colorspace: string;
}

export interface Y4mFile extends Y4mHeader {
  frames: I420Frame[];
}

const SUPPORTED = new Set(['420', '420jpeg', '420mpeg2', '420paldv']);

export function y4mHeader(h: { width: number; height: number; fps: number; colorspace?: string }): string {
  if (h.width % 2 || h.height % 2) throw new Error(`y4m: width and height must be even, got ${h.width}x${h.height}`);
  const cs = h.colorspace ?? '420jpeg';
  if (!SUPPORTED.has(cs)) throw new Error(`y4m: unsupported colour space C${cs}`);
  const [num, den] = fpsRational(h.fps);
  return `YUV4MPEG2 W${h.width} H${h.height} F${num}:${den} Ip A1:1 C${cs}\n`;
}

function fpsRational(fps: number): [number, number] {
  if (Number.isInteger(fps)) return [fps, 1];
  return [Math.round(fps * 1000), 1000];
}

/**
 * Writes frames to a .y4m file, streaming. `next(i)` returns frame i (the same buffer may be
 * reused between calls); frames must all be `width`×`height`.
 */
export async function writeY4m(
  path: string,
  h: { width: number; height: number; fps: number; colorspace?: string },
  count: number,
  next: (index: number) => I420Frame,
): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.write(y4mHeader(h));
    const frameTag = Buffer.from('FRAME\n');
    const size = i420Size(h.width, h.height);
    for (let i = 0; i < count; i++) {
      const f = next(i);
      if (f.width !== h.width || f.height !== h.height || f.data.length !== size) {
        throw new Error(`y4m: frame ${i} is ${f.width}x${f.height}, expected ${h.width}x${h.height}`);
      }
      await fh.write(frameTag);
      await fh.write(f.data);
    }
  } finally {
    await fh.close();
  }
}

/** Parses the header line of a .y4m file. */
export function parseY4mHeader(line: string): Y4mHeader {
  const parts = line.trim().split(' ');
  if (parts[0] !== 'YUV4MPEG2') throw new Error('y4m: missing YUV4MPEG2 signature');
  const h: Y4mHeader = { width: 0, height: 0, fpsNum: 25, fpsDen: 1, colorspace: '420jpeg' };
  for (const p of parts.slice(1)) {
    const v = p.slice(1);
    switch (p[0]) {
      case 'W': h.width = Number(v); break;
      case 'H': h.height = Number(v); break;
      case 'F': {
        const [n, d] = v.split(':').map(Number);
        h.fpsNum = n;
        h.fpsDen = d || 1;
        break;
      }
      case 'C': h.colorspace = v; break;
      default: break; // I (interlacing), A (aspect), X (comments): layout-neutral
    }
  }
  if (!(h.width > 0 && h.height > 0)) throw new Error(`y4m: bad size in header "${line.trim()}"`);
  if (!SUPPORTED.has(h.colorspace)) throw new Error(`y4m: unsupported colour space C${h.colorspace}`);
  if (h.width % 2 || h.height % 2) throw new Error('y4m: odd sizes are not supported');
  return h;
}

/** Parses a whole .y4m file held in memory. */
export function parseY4m(buf: Uint8Array): Y4mFile {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) throw new Error('y4m: no header line');
  const header = parseY4mHeader(Buffer.from(buf.subarray(0, nl)).toString('latin1'));
  const size = i420Size(header.width, header.height);
  const frames: I420Frame[] = [];
  let pos = nl + 1;
  while (pos < buf.length) {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) throw new Error(`y4m: truncated frame header at byte ${pos}`);
    const tag = Buffer.from(buf.subarray(pos, end)).toString('latin1');
    if (!tag.startsWith('FRAME')) throw new Error(`y4m: expected FRAME at byte ${pos}, got "${tag.slice(0, 16)}"`);
    pos = end + 1;
    if (pos + size > buf.length) throw new Error(`y4m: truncated frame ${frames.length}`);
    frames.push({ width: header.width, height: header.height, data: buf.slice(pos, pos + size), timestamp: (frames.length * 1000 * header.fpsDen) / header.fpsNum });
    pos += size;
  }
  return { ...header, frames };
}

export async function readY4m(path: string): Promise<Y4mFile> {
  return parseY4m(await readFile(path));
}

/**
 * Reads a y4m stream as it arrives on a pipe (the native decoder's output): call `next()` after
 * each push until it returns null. Each picture is copied once, out of the queue into its own
 * buffer. Throws on a stream that is not 4:2:0 y4m.
 */
export class Y4mReader {
  header?: Y4mHeader;

  constructor(private readonly queue: ByteQueue) {}

  next(timestamp = 0): I420Frame | null {
    const q = this.queue;
    if (!this.header) {
      const nl = q.indexOf(0x0a, 512);
      if (nl < 0) {
        if (q.length >= 512) throw new Error('y4m: no header line in the first 512 bytes');
        return null;
      }
      const line = new Uint8Array(nl + 1);
      q.readInto(line);
      this.header = parseY4mHeader(Buffer.from(line).toString('latin1'));
    }
    const nl = q.indexOf(0x0a, 256);
    if (nl < 0) {
      if (q.length >= 256) throw new Error('y4m: no FRAME line');
      return null;
    }
    const { width, height } = this.header;
    const size = i420Size(width, height);
    if (q.length < nl + 1 + size) return null;
    if (q.at(0) !== 0x46 /* F */) throw new Error('y4m: expected a FRAME line');
    q.skip(nl + 1);
    const frame: I420Frame = { width, height, data: new Uint8Array(size), timestamp };
    q.readInto(frame.data);
    return frame;
  }
}
