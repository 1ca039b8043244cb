/**
 * Echoes the driving frame, centre-cropped and scaled to the output size. Used by tests (the
 * content that comes back is the content that was sent) and to measure the media path's own latency.
 */
import { cropScaleI420 } from '../../media/convert.ts';
import type { I420Frame, RgbaImage } from '../../media/frame.ts';
import type { DrivingFrame, PortraitState, Renderer, RendererOptions } from '../types.ts';

export async function createPassthroughRenderer(_opts: RendererOptions): Promise<Renderer> {
  return {
    name: 'passthrough',
    async prepare(portrait: RgbaImage): Promise<PortraitState> {
      return { width: portrait.width, height: portrait.height };
    },
    async render(_p: PortraitState, d: DrivingFrame, out: I420Frame): Promise<void> {
      cropScaleI420(d.frame, out, 'cover');
    },
    async dispose(): Promise<void> {},
  };
}
