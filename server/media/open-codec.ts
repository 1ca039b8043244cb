/**
 * Opens a decoder or encoder on the backend the server chose at start (see codec.ts). The backends
 * are loaded on first use, so a server on the native codec never loads libav.js.
 */
import { CodecError, type CodecBackend, type VideoCodec, type VideoDecoder, type VideoEncoder, type Vp8EncoderOptions } from './codec.ts';

function noH264(): CodecError {
  return new CodecError('bad_settings', 'H.264 needs the native codec (ffmpeg); this server runs the wasm codec, which has VP8 only');
}

export async function openDecoder(backend: CodecBackend, codec: VideoCodec = 'vp8'): Promise<VideoDecoder> {
  if (backend.name === 'native') {
    const { FfmpegDecoder } = await import('./ffmpeg-decoder.ts');
    return new FfmpegDecoder(backend.ffmpegPath, codec);
  }
  if (codec !== 'vp8') throw noH264();
  const { WasmVp8Decoder } = await import('./wasm-codec.ts');
  return WasmVp8Decoder.create();
}

export async function openEncoder(backend: CodecBackend, opts: Vp8EncoderOptions, codec: VideoCodec = 'vp8'): Promise<VideoEncoder> {
  if (backend.name === 'native') {
    const { FfmpegEncoder } = await import('./ffmpeg-encoder.ts');
    return new FfmpegEncoder(backend.ffmpegPath, opts, codec);
  }
  if (codec !== 'vp8') throw noH264();
  const { WasmVp8Encoder } = await import('./wasm-codec.ts');
  return WasmVp8Encoder.create(opts);
}
