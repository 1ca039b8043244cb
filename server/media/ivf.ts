/**
 * IVF, the simplest container for VP8: a 32-byte file header, then per frame a 12-byte header
 * (size, 64-bit pts) and the frame's bytes. The native codec processes read and write it on their
 * pipes because it frames every frame exactly, with nothing to probe or buffer; ffmpeg also reads
 * H.264 access units from it (fourcc H264), though it cannot write them there.
 */
import type { ByteQueue } from './byte-queue.ts';

export const IVF_HEADER_SIZE = 32;
export const IVF_FRAME_HEADER_SIZE = 12;

export function ivfHeader(fourcc: 'VP80' | 'H264', width: number, height: number, timebaseDen = 90_000): Uint8Array {
  const h = new Uint8Array(IVF_HEADER_SIZE);
  const v = new DataView(h.buffer);
  h.set([0x44, 0x4b, 0x49, 0x46]); // DKIF
  v.setUint16(4, 0, true);
  v.setUint16(6, IVF_HEADER_SIZE, true);
  for (let i = 0; i < 4; i++) h[8 + i] = fourcc.charCodeAt(i);
  v.setUint16(12, width, true);
  v.setUint16(14, height, true);
  v.setUint32(16, timebaseDen, true);
  v.setUint32(20, 1, true);
  return h;
}

export function ivfFrameHeader(size: number, pts: number): Uint8Array {
  const h = new Uint8Array(IVF_FRAME_HEADER_SIZE);
  const v = new DataView(h.buffer);
  v.setUint32(0, size, true);
  v.setUint32(4, pts >>> 0, true);
  v.setUint32(8, Math.floor(pts / 2 ** 32) >>> 0, true);
  return h;
}

/**
 * Reads whole IVF frames off a byte queue: call `next()` after each push until it returns null.
 * Throws on a stream that is not IVF.
 */
export class IvfReader {
  private headerSeen = false;

  constructor(private readonly queue: ByteQueue) {}

  next(): Uint8Array | null {
    const q = this.queue;
    if (!this.headerSeen) {
      if (q.length < IVF_HEADER_SIZE) return null;
      if (q.at(0) !== 0x44 || q.at(1) !== 0x4b || q.at(2) !== 0x49 || q.at(3) !== 0x46) throw new Error('not an IVF stream');
      const headerSize = q.at(6) | (q.at(7) << 8);
      if (q.length < headerSize) return null;
      q.skip(headerSize);
      this.headerSeen = true;
    }
    if (q.length < IVF_FRAME_HEADER_SIZE) return null;
    const size = q.u32le(0);
    if (q.length < IVF_FRAME_HEADER_SIZE + size) return null;
    q.skip(IVF_FRAME_HEADER_SIZE);
    const frame = new Uint8Array(size);
    q.readInto(frame);
    return frame;
  }
}
