/**
 * Opens a decoder or encoder on the backend the server chose at start (see codec.ts). The backends
 * are loaded on first use, so a server on the native codec never loads libav.js.
 */
import type { CodecBackend, VideoDecoder, VideoEncoder, Vp8EncoderOptions } from './codec.ts';

export async function openDecoder(backend: CodecBackend): Promise<VideoDecoder> {
  if (backend.name === 'native') {
    const { FfmpegVp8Decoder } = await import('./ffmpeg-codec.ts');
    return new FfmpegVp8Decoder(backend.ffmpegPath);
  }
  const { WasmVp8Decoder } = await import('./wasm-codec.ts');
  return WasmVp8Decoder.create();
}

export async function openEncoder(backend: CodecBackend, opts: Vp8EncoderOptions): Promise<VideoEncoder> {
  if (backend.name === 'native') {
    const { FfmpegVp8Encoder } = await import('./ffmpeg-codec.ts');
    return new FfmpegVp8Encoder(backend.ffmpegPath, opts);
  }
  const { WasmVp8Encoder } = await import('./wasm-codec.ts');
  return WasmVp8Encoder.create(opts);
}
