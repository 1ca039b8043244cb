/**
 * What an H.264 access unit (Annex B) says before a decoder sees it: its NAL units, whether it
 * decodes on its own (IDR), and the picture size its sequence parameter set declares (ITU-T
 * H.264 §7.3.2.1.1). The size is read so that a crafted SPS cannot make the decoder allocate a
 * 16k×16k picture, and so that a new size starts a new decoder (a y4m stream has one size).
 */
import { MAX_DECODE_DIMENSION } from './vp8.ts';

export const NAL_IDR = 5;
export const NAL_SPS = 7;
export const NAL_PPS = 8;

/** The NAL units of an Annex B stream (start codes removed). */
export function splitAnnexB(data: Uint8Array): Uint8Array[] {
  const units: Uint8Array[] = [];
  let start = -1;
  let i = 0;
  while (i + 2 < data.length) {
    if (data[i] === 0 && data[i + 1] === 0 && (data[i + 2] === 1 || (data[i + 2] === 0 && data[i + 3] === 1))) {
      const codeLen = data[i + 2] === 1 ? 3 : 4;
      if (start >= 0) units.push(trimZeros(data.subarray(start, i)));
      i += codeLen;
      start = i;
    } else {
      i++;
    }
  }
  if (start >= 0 && start < data.length) units.push(data.subarray(start));
  return units.filter((u) => u.length > 0);
}

function trimZeros(u: Uint8Array): Uint8Array {
  let end = u.length;
  while (end > 0 && u[end - 1] === 0) end--;
  return u.subarray(0, end);
}

/** Reads Exp-Golomb coded fields from a NAL unit's RBSP (emulation-prevention bytes removed). */
class BitReader {
  private pos = 0;
  private readonly bits: Uint8Array;

  constructor(nal: Uint8Array) {
    const out: number[] = [];
    for (let i = 0; i < nal.length; i++) {
      if (i >= 2 && nal[i] === 3 && nal[i - 1] === 0 && nal[i - 2] === 0) continue;
      out.push(nal[i]);
    }
    this.bits = Uint8Array.from(out);
  }

  bit(): number {
    if (this.pos >= this.bits.length * 8) throw new RangeError('SPS ends early');
    const b = (this.bits[this.pos >> 3] >> (7 - (this.pos & 7))) & 1;
    this.pos++;
    return b;
  }

  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }

  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) if (++zeros > 31) throw new RangeError('bad Exp-Golomb code');
    return 2 ** zeros - 1 + this.u(zeros);
  }

  se(): number {
    const k = this.ue();
    return k % 2 ? (k + 1) / 2 : -(k / 2);
  }
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/** Picture size (after cropping) that an SPS NAL unit declares. Throws on a malformed one. */
export function spsSize(sps: Uint8Array): { width: number; height: number } {
  const r = new BitReader(sps.subarray(1));
  const profile = r.u(8);
  r.u(16); // constraint flags, level
  r.ue(); // seq_parameter_set_id
  let chromaFormat = 1;
  let separatePlanes = 0;
  if (HIGH_PROFILES.has(profile)) {
    chromaFormat = r.ue();
    if (chromaFormat === 3) separatePlanes = r.bit();
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.bit(); // qpprime_y_zero_transform_bypass_flag
    if (r.bit()) {
      for (let i = 0; i < (chromaFormat === 3 ? 12 : 8); i++) {
        if (!r.bit()) continue;
        // scaling_list(): delta-coded, skipped value by value
        let last = 8;
        let next = 8;
        for (let j = 0; j < (i < 6 ? 16 : 64) && next !== 0; j++) {
          next = (last + r.se() + 256) % 256;
          last = next === 0 ? last : next;
        }
      }
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) r.ue();
  else if (pocType === 1) {
    r.bit();
    r.se();
    r.se();
    const n = r.ue();
    for (let i = 0; i < n; i++) r.se();
  }
  r.ue(); // max_num_ref_frames
  r.bit(); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = r.ue() + 1;
  const heightMapUnits = r.ue() + 1;
  const frameMbsOnly = r.bit();
  if (!frameMbsOnly) r.bit();
  r.bit(); // direct_8x8_inference_flag
  let crop = { l: 0, r: 0, t: 0, b: 0 };
  if (r.bit()) crop = { l: r.ue(), r: r.ue(), t: r.ue(), b: r.ue() };
  const chroma = separatePlanes ? 0 : chromaFormat;
  const cropX = chroma === 1 || chroma === 2 ? 2 : 1;
  const cropY = (chroma === 1 ? 2 : 1) * (2 - frameMbsOnly);
  const width = widthMbs * 16 - cropX * (crop.l + crop.r);
  const height = (2 - frameMbsOnly) * heightMapUnits * 16 - cropY * (crop.t + crop.b);
  return { width, height };
}

export interface AccessUnitInfo {
  keyframe: boolean;
  /** The SPS it carries, if any (a new one may change the picture size). */
  sps?: Uint8Array;
  width?: number;
  height?: number;
}

/** Error kinds as the codec layer names them: broken bytes, or well-formed but outside what we decode. */
export class H264InputError extends Error {
  constructor(
    readonly kind: 'corrupt_frame' | 'bad_frame',
    message: string,
  ) {
    super(message);
  }
}

/** Inspects one Annex B access unit; throws H264InputError for one a decoder must not see. */
export function inspectAccessUnit(data: Uint8Array): AccessUnitInfo {
  const units = splitAnnexB(data);
  if (units.length === 0) throw new H264InputError('corrupt_frame', 'H.264 access unit has no NAL unit (no start code) ' + Buffer.from(data.subarray(0, 24)).toString('hex') + ' len ' + data.length);
  const info: AccessUnitInfo = { keyframe: false };
  for (const u of units) {
    if (u[0] & 0x80) throw new H264InputError('corrupt_frame', 'H.264 NAL unit with the forbidden bit set');
    const type = u[0] & 0x1f;
    if (type === NAL_IDR) info.keyframe = true;
    if (type === NAL_SPS) {
      let size: { width: number; height: number };
      try {
        size = spsSize(u);
      } catch (err) {
        throw new H264InputError('corrupt_frame', `H.264 SPS is malformed: ${(err as Error).message}`);
      }
      if (!(size.width >= 2 && size.height >= 2)) throw new H264InputError('corrupt_frame', `H.264 SPS declares ${size.width}×${size.height}`);
      if (size.width > MAX_DECODE_DIMENSION || size.height > MAX_DECODE_DIMENSION) {
        throw new H264InputError('bad_frame', `H.264 SPS declares ${size.width}×${size.height}; the decoder accepts up to ${MAX_DECODE_DIMENSION}×${MAX_DECODE_DIMENSION}`);
      }
      Object.assign(info, { sps: u, ...size });
    }
  }
  return info;
}
