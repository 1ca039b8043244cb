/**
 * Reads the native H.264 encoder's output. ffmpeg cannot put H.264 in IVF, and a raw Annex B
 * stream has no frame boundaries (a frame would only be known complete when the next one
 * starts: one frame of latency). FLV frames every packet in a tag, so each encoded frame comes
 * out whole the moment it is written. Its AVC packets are length-prefixed NAL units, with SPS and
 * PPS sent once in a sequence header; the reader turns each frame into an Annex B access unit
 * and puts SPS and PPS in front of every keyframe, as a WebRTC receiver needs.
 */
import type { ByteQueue } from './byte-queue.ts';

const FLV_HEADER = 9 + 4; // signature, version, flags, header size; then PreviousTagSize0
const TAG_HEADER = 11;
const TAG_VIDEO = 9;
const CODEC_AVC = 7;
const START_CODE = Uint8Array.of(0, 0, 0, 1);

export interface FlvVideoFrame {
  data: Uint8Array;
  keyframe: boolean;
}

export class FlvAvcReader {
  private headerSeen = false;
  private lengthSize = 4;
  private parameterSets: Uint8Array[] = [];

  constructor(private readonly queue: ByteQueue) {}

  /** The next whole video frame, or null when it has not fully arrived. Throws on a stream that is not FLV/AVC. */
  next(): FlvVideoFrame | null {
    const q = this.queue;
    if (!this.headerSeen) {
      if (q.length < FLV_HEADER) return null;
      if (q.at(0) !== 0x46 || q.at(1) !== 0x4c || q.at(2) !== 0x56) throw new Error('not an FLV stream');
      q.skip(FLV_HEADER);
      this.headerSeen = true;
    }
    for (;;) {
      if (q.length < TAG_HEADER) return null;
      const type = q.at(0) & 0x1f;
      const size = (q.at(1) << 16) | (q.at(2) << 8) | q.at(3);
      if (q.length < TAG_HEADER + size + 4) return null;
      q.skip(TAG_HEADER);
      const body = new Uint8Array(size);
      q.readInto(body);
      q.skip(4); // PreviousTagSize
      if (type !== TAG_VIDEO || size < 5 || (body[0] & 0x0f) !== CODEC_AVC) continue;
      const keyframe = body[0] >> 4 === 1;
      const packetType = body[1];
      if (packetType === 0) {
        ({ lengthSize: this.lengthSize, parameterSets: this.parameterSets } = parseAvcC(body.subarray(5)));
        continue;
      }
      if (packetType !== 1) continue;
      return { data: this.annexB(body.subarray(5), keyframe), keyframe };
    }
  }

  /** Length-prefixed NAL units → Annex B, SPS and PPS first on a keyframe. */
  private annexB(avcc: Uint8Array, keyframe: boolean): Uint8Array {
    const units: Uint8Array[] = keyframe ? [...this.parameterSets] : [];
    for (let off = 0; off + this.lengthSize <= avcc.length; ) {
      let len = 0;
      for (let i = 0; i < this.lengthSize; i++) len = len * 256 + avcc[off + i];
      off += this.lengthSize;
      units.push(avcc.subarray(off, off + len));
      off += len;
    }
    let size = 0;
    for (const u of units) size += START_CODE.length + u.length;
    const out = new Uint8Array(size);
    let o = 0;
    for (const u of units) {
      out.set(START_CODE, o);
      out.set(u, o + START_CODE.length);
      o += START_CODE.length + u.length;
    }
    return out;
  }
}

/**
 * The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1): NAL length size, SPS and PPS.
 * Read here rather than with werift's parser because this runs in every loop worker, and loading
 * werift there would add most of a second to each worker's start.
 */
export function parseAvcC(r: Uint8Array): { lengthSize: number; parameterSets: Uint8Array[] } {
  if (r.length < 7 || r[0] !== 1) throw new Error('not an AVCDecoderConfigurationRecord');
  const lengthSize = (r[4] & 0x03) + 1;
  const sets: Uint8Array[] = [];
  let off = 5;
  for (const countMask of [0x1f, 0xff]) {
    if (off >= r.length) throw new Error('AVCDecoderConfigurationRecord ends early');
    const count = r[off++] & countMask;
    for (let i = 0; i < count; i++) {
      if (off + 2 > r.length) throw new Error('AVCDecoderConfigurationRecord ends early');
      const len = (r[off] << 8) | r[off + 1];
      if (off + 2 + len > r.length) throw new Error('AVCDecoderConfigurationRecord ends early');
      sets.push(r.subarray(off + 2, off + 2 + len));
      off += 2 + len;
    }
  }
  return { lengthSize, parameterSets: sets };
}
