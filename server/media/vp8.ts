/**
 * What the first bytes of a VP8 frame say (RFC 6386 §9.1), read before any decoder sees the frame:
 * the frame's kind and size decide how a decoder is set up, and a crafted header must fail here
 * with a message rather than inside a codec.
 */

/**
 * Largest decoded width or height. The header alone decides how much memory the decoder
 * allocates, so without a cap one crafted 16383×16383 keyframe from a peer would cost ~400 MB;
 * 4096 covers 4K cameras.
 */
export const MAX_DECODE_DIMENSION = 4096;

export interface Vp8FrameHeader {
  keyframe: boolean;
  /** Hidden frames (show_frame = 0) update the references but produce no picture. */
  shown: boolean;
  /** Only keyframes carry a size. */
  width?: number;
  height?: number;
}

/** Why a frame was refused: its bytes are broken, or it is well-formed but outside what we decode. */
export class Vp8HeaderError extends Error {
  constructor(
    readonly kind: 'corrupt_frame' | 'bad_frame',
    message: string,
  ) {
    super(message);
  }
}

export function parseVp8Header(data: Uint8Array): Vp8FrameHeader {
  if (data.length < 3) throw new Vp8HeaderError('corrupt_frame', `VP8 frame too short (${data.length} bytes)`);
  const tag = data[0] | (data[1] << 8) | (data[2] << 16);
  const keyframe = (tag & 1) === 0;
  const version = (tag >> 1) & 7;
  const shown = ((tag >> 4) & 1) === 1;
  const firstPartition = tag >>> 5;
  const headerLen = keyframe ? 10 : 3;
  if (version > 3) throw new Vp8HeaderError('corrupt_frame', `VP8 frame has unknown version ${version}`);
  if (data.length < headerLen + firstPartition) {
    throw new Vp8HeaderError('corrupt_frame', `VP8 first partition (${firstPartition} bytes) overruns the ${data.length}-byte frame`);
  }
  if (!keyframe) return { keyframe, shown };
  if (data[3] !== 0x9d || data[4] !== 0x01 || data[5] !== 0x2a) throw new Vp8HeaderError('corrupt_frame', 'VP8 keyframe start code missing');
  const width = (data[6] | (data[7] << 8)) & 0x3fff;
  const height = (data[8] | (data[9] << 8)) & 0x3fff;
  if (width < 2 || height < 2) throw new Vp8HeaderError('corrupt_frame', `VP8 keyframe has size ${width}×${height}`);
  if (width > MAX_DECODE_DIMENSION || height > MAX_DECODE_DIMENSION) {
    throw new Vp8HeaderError('bad_frame', `VP8 keyframe is ${width}×${height}; the decoder accepts up to ${MAX_DECODE_DIMENSION}×${MAX_DECODE_DIMENSION}`);
  }
  return { keyframe, shown, width, height };
}
