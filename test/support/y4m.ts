/** The id-carrying test pattern as a .y4m file, for Chromium's fake camera and the load tester. */
import { allocI420 } from '../../server/media/frame.ts';
import { writeY4m } from '../../server/media/y4m.ts';
import { drawPattern } from './pattern.ts';

/** Writes `frames` frames of the test pattern (ids 0, 1, 2, ...) to a .y4m file. */
export async function writePatternY4m(
  path: string,
  o: { width: number; height: number; fps: number; frames: number; firstId?: number },
): Promise<void> {
  const frame = allocI420(o.width, o.height);
  const first = o.firstId ?? 0;
  await writeY4m(path, o, o.frames, (i) => {
    drawPattern(frame, first + i);
    return frame;
  });
}
