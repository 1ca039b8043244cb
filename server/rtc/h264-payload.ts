/**
 * The H.264 RTP payload format, packetization mode 1 (RFC 6184): single NAL units, STAP-A
 * aggregates and FU-A fragments. A frame (an access unit) is joined into an Annex B byte stream —
 * each NAL unit after a start code — which is what the native H.264 decoder takes.
 *
 * H.264 packets carry no "start of frame" bit, so a packet starts an access unit when its first
 * NAL unit can only open one: an access unit delimiter, SEI, SPS or PPS, or the first slice of a
 * picture (first_mb_in_slice = 0, i.e. the slice header's first bit is 1). An access unit that
 * opens with an SPS or an IDR slice is a keyframe (senders put SPS and PPS before each IDR).
 */
import type { ParsedPayload, PayloadFormat } from './frame-assembler.ts';

export const NAL = { slice: 1, idr: 5, sei: 6, sps: 7, pps: 8, aud: 9, stapA: 24, fuA: 28 } as const;

const START_CODE = Uint8Array.of(0, 0, 0, 1);

/** Whether a NAL unit of this type, whose next byte (the slice header's) is `next`, opens an access unit. */
function opensAccessUnit(type: number, next: number | undefined): boolean {
  if (type === NAL.aud || type === NAL.sei || type === NAL.sps || type === NAL.pps) return true;
  if (type === NAL.slice || type === NAL.idr) return next !== undefined && (next & 0x80) !== 0;
  return false;
}

export function parseH264Payload(p: Uint8Array): ParsedPayload | null {
  if (p.length < 2 || p[0] & 0x80) return null;
  const type = p[0] & 0x1f;
  if (type >= 1 && type <= 23) {
    const start = opensAccessUnit(type, p[1]);
    return { start, keyframe: start && (type === NAL.sps || type === NAL.idr), payload: p };
  }
  if (type === NAL.stapA) {
    let off = 1;
    let first = -1;
    let keyframe = false;
    let firstNext: number | undefined;
    while (off + 2 <= p.length) {
      const size = (p[off] << 8) | p[off + 1];
      if (size === 0 || off + 2 + size > p.length) return null;
      const t = p[off + 2] & 0x1f;
      if (first < 0) {
        first = t;
        firstNext = p[off + 3];
      }
      if (t === NAL.sps || t === NAL.idr) keyframe = true;
      off += 2 + size;
    }
    if (first < 0 || off !== p.length) return null;
    const start = opensAccessUnit(first, firstNext);
    return { start, keyframe: start && keyframe, payload: p };
  }
  if (type === NAL.fuA) {
    if (p.length < 3) return null;
    const s = (p[1] & 0x80) !== 0;
    const inner = p[1] & 0x1f;
    const start = s && opensAccessUnit(inner, p[2]);
    return { start, keyframe: start && inner === NAL.idr, payload: p };
  }
  // STAP-B, MTAP and FU-B belong to the interleaved mode (2), which is not negotiated.
  return null;
}

/** A frame's packets as one Annex B access unit. */
export function joinH264(parts: Uint8Array[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    const type = p[0] & 0x1f;
    if (type === NAL.stapA) {
      for (let off = 1; off + 2 <= p.length; ) {
        const size = (p[off] << 8) | p[off + 1];
        chunks.push(START_CODE, p.subarray(off + 2, off + 2 + size));
        off += 2 + size;
      }
    } else if (type === NAL.fuA) {
      // The first fragment rebuilds the NAL header: F and NRI from the FU indicator, the type from the FU header.
      if (p[1] & 0x80) chunks.push(START_CODE, Uint8Array.of((p[0] & 0xe0) | (p[1] & 0x1f)));
      chunks.push(p.subarray(2));
    } else {
      chunks.push(START_CODE, p);
    }
  }
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

export const h264Payload: PayloadFormat = { codec: 'h264', parse: parseH264Payload, join: joinH264 };
