/** The VP8 RTP payload format (RFC 7741): the payload descriptor, and frames as the concatenated payloads. */
import type { PayloadFormat } from './frame-assembler.ts';

/**
 * Parses the VP8 payload descriptor (RFC 7741 §4.2); null when the packet is too short to be VP8.
 * `tid` is the temporal layer index when the T bit says the descriptor carries one.
 */
export function parseVp8Descriptor(p: Uint8Array): { start: boolean; keyframe: boolean; tid?: number; payload: Uint8Array } | null {
  if (p.length < 1) return null;
  const b0 = p[0];
  let off = 1;
  let tid: number | undefined;
  if (b0 & 0x80) {
    if (p.length < 2) return null;
    const b1 = p[off++];
    if (b1 & 0x80) off += p[off] & 0x80 ? 2 : 1;
    if (b1 & 0x40) off += 1;
    if (b1 & 0x20) {
      if (off >= p.length) return null;
      tid = p[off] >> 6;
    }
    if (b1 & 0x30) off += 1;
  }
  if (off >= p.length) return null;
  const start = (b0 & 0x10) !== 0 && (b0 & 0x07) === 0;
  const payload = p.subarray(off);
  // In the first partition's first packet, the VP8 frame tag's P bit is 0 for a keyframe.
  return { start, keyframe: start && (payload[0] & 0x01) === 0, tid, payload };
}

/** Joins payloads end to end into one buffer. */
export function concat(parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const data = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    data.set(p, off);
    off += p.length;
  }
  return data;
}

export const vp8Payload: PayloadFormat = { codec: 'vp8', parse: parseVp8Descriptor, join: concat };
