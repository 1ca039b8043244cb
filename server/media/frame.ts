/**
 * Raw video frames as they travel between the codecs, the frame loop and the renderers (inside a
 * session's loop worker: pictures never cross threads).
 *
 * I420 is the working format of the pipeline because it is what VP8 decodes to and encodes from:
 * converting to RGBA only happens inside renderers that need it.
 */
import { XplError } from '../errors.ts';

/** Planar YUV 4:2:0, tightly packed: Y (w·h), then U (w/2·h/2), then V (w/2·h/2). Width and height are even. */
export interface I420Frame {
  width: number;
  height: number;
  data: Uint8Array;
  /** Capture time of the driving frame this one derives from, in milliseconds (performance.now() clock of the server). */
  timestamp: number;
}

/** Interleaved 8-bit RGBA, row-major, no padding. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** One encoded video frame (a whole VP8 frame, not an RTP packet). */
export interface EncodedFrame {
  data: Uint8Array;
  keyframe: boolean;
  /** Same clock as I420Frame.timestamp. */
  timestamp: number;
}

export function i420Size(width: number, height: number): number {
  return width * height + 2 * ((width >> 1) * (height >> 1));
}

export function allocI420(width: number, height: number, timestamp = 0): I420Frame {
  return { width, height, data: new Uint8Array(i420Size(width, height)), timestamp };
}

/** Views of the three planes of a frame, without copying. */
export function planes(f: I420Frame): { y: Uint8Array; u: Uint8Array; v: Uint8Array; cw: number; ch: number } {
  const cw = f.width >> 1;
  const ch = f.height >> 1;
  const ySize = f.width * f.height;
  const cSize = cw * ch;
  return {
    y: f.data.subarray(0, ySize),
    u: f.data.subarray(ySize, ySize + cSize),
    v: f.data.subarray(ySize + cSize, ySize + 2 * cSize),
    cw,
    ch,
  };
}

/**
 * Throws a `bad_request` XplError unless `f` is a frame the codecs and converters can work on:
 * positive even integer dimensions and at least `i420Size` bytes. Checked at module borders so a
 * bad frame fails with a message instead of garbling memory or reading out of bounds.
 */
export function assertI420(f: I420Frame, what = 'frame'): void {
  const { width, height } = f;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || width % 2 || height % 2) {
    throw new XplError('bad_request', `${what}: I420 needs positive even dimensions, got ${width}×${height}`);
  }
  if (!(f.data instanceof Uint8Array) || f.data.length < i420Size(width, height)) {
    throw new XplError('bad_request', `${what}: ${width}×${height} I420 needs ${i420Size(width, height)} bytes, got ${f.data?.length ?? 0}`);
  }
}
