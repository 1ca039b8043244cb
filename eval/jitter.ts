/**
 * Jitter on a still driver (frames [s0, s1) of a clip, where the speaker holds still), read four
 * ways, because the judge's own reading is not a fixed instrument:
 *
 * - raw: the output tracker's raw landmark motion per frame (IOD units), against the driver's raw
 *   landmarks as the renderer's tracker read them — the original figure. The tracker places each
 *   frame's crop from the previous frame's landmarks; on some faces (glasses, a painting) that
 *   feedback falls into a period-2 cycle of its own (the crop swings a pixel or two and back every
 *   frame) which reads as landmark motion although the picture hardly moves.
 * - fixed crop: the same FaceMesh network through one crop per side, placed at the window's first
 *   frame and kept: no feedback, so identical frames read exactly zero and the reading is the
 *   picture's motion plus the network's own sensitivity to pixel noise. Both sides are read the
 *   same way: output / driver is the fair ratio.
 * - floor: the raw judge (a fresh tracker) on a perfectly still output — the portrait rendered at
 *   its neutral, the same frame repeated for as many frames as the clip up to the window's end —
 *   read over the same window: what the raw figure shows when nothing moves.
 * - mesh: the warp's own face vertices (where the renderer put the 468 landmarks), no tracker at
 *   all: the output's true landmark motion.
 *
 * And the mean |ΔY| between consecutive output frames (grey levels).
 */
import type { I420Frame } from '../server/media/frame.ts';
import { FaceMesher } from '../server/face/mesh.ts';
import { FaceTracker, roiFromLandmarks } from '../server/face/tracker.ts';
import type { FaceImage, FaceRoi, FaceState } from '../server/face/types.ts';

export interface JitterMetrics {
  /** Mean |ΔY| between consecutive output frames over the window. */
  jitterY: number;
  /** Raw: output tracker's landmark motion per frame / IOD. */
  jitterLandmarks: number;
  /** Raw: the driver's landmark motion per frame / IOD (the renderer's tracker): its own noise. */
  driverJitterLandmarks: number;
  /** Output landmark motion per frame / IOD read through one fixed crop. */
  jitterFixedCrop: number;
  /** The driver's, read the same way. */
  driverJitterFixedCrop: number;
  /** The raw judge on the portrait's neutral render repeated (nothing moves): its floor on this portrait. */
  jitterFloor: number;
  /** The warp's face vertices' motion per frame / the portrait's IOD (no tracker). */
  jitterMesh: number;
}

/** Mean landmark motion between two landmark sets (x, y of 468 points with `stride`), in units of `scale`. */
export function landmarkMotion(a: ArrayLike<number>, b: ArrayLike<number>, scale: number, stride = 3): number {
  let l = 0;
  for (let i = 0; i < 468; i++) l += Math.hypot(a[stride * i] - b[stride * i], a[stride * i + 1] - b[stride * i + 1]);
  return l / 468 / scale;
}

const mean = (v: number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);
const i420 = (f: I420Frame): FaceImage => ({ kind: 'i420', width: f.width, height: f.height, data: f.data });

/**
 * One side read through one crop: the crop (and the IOD it divides by) is fixed at the first
 * frame offered with a face; every later frame is meshed through it.
 */
export class FixedCropReader {
  private roi: FaceRoi | null = null;
  private scale = 1;
  private prev: Float32Array | null = null;
  private readonly lm = new Float32Array(468 * 3);
  readonly motion: number[] = [];
  constructor(private readonly mesher: FaceMesher) {}

  /** `face`: the side's tracked face on this frame (for placing the crop), or null. */
  async see(img: FaceImage, face: Pick<FaceState, 'rawLandmarks' | 'pose'> | null): Promise<void> {
    if (!this.roi) {
      if (!face) return;
      this.roi = roiFromLandmarks(face.rawLandmarks);
      this.scale = face.pose.scale;
    }
    await this.mesher.landmarks(img, this.roi, this.lm);
    if (this.prev) this.motion.push(landmarkMotion(this.lm, this.prev, this.scale));
    (this.prev ??= new Float32Array(this.lm.length)).set(this.lm);
  }
}

/** The raw judge (an unsmoothed tracker) on one still frame repeated `frames` times, read over [s0, s1). */
export async function judgeFloor(still: I420Frame, frames: number, [s0, s1]: [number, number], fps: number): Promise<number> {
  const t = await FaceTracker.create({ smoothing: { minCutoff: 1000, beta: 0 } });
  let prev: Float32Array | null = null;
  const v: number[] = [];
  for (let k = 0; k < frames; k++) {
    const o = await t.trackImage(i420(still), (k * 1000) / fps);
    if (k > s0 && k < s1 && o && prev) v.push(landmarkMotion(o.rawLandmarks, prev, o.pose.scale));
    prev = o ? o.rawLandmarks : null;
  }
  return mean(v);
}

/** Collects the window's readings frame by frame (call `frame` for every frame of the clip, in order). */
export class JitterMeter {
  private readonly y: number[] = [];
  private readonly raw: number[] = [];
  private readonly rawDriver: number[] = [];
  private readonly mesh: number[] = [];
  private readonly out: FixedCropReader;
  private readonly driver: FixedCropReader;
  private prevOut: I420Frame | null = null;
  private prevOutLm: Float32Array | null = null;
  private prevDrvLm: Float32Array | null = null;
  private prevMesh: Float64Array | null = null;

  private constructor(
    private readonly window: [number, number],
    mesher: FaceMesher,
  ) {
    this.out = new FixedCropReader(mesher);
    this.driver = new FixedCropReader(mesher);
  }

  static async create(window: [number, number]): Promise<JitterMeter> {
    return new JitterMeter(window, await FaceMesher.create());
  }

  /**
   * One frame: the output and the judge's reading of it, the driving frame and the renderer's
   * reading of it, and the warp's face vertices (x, y interleaved, output pixels) with the
   * portrait's IOD in pixels.
   */
  async frame(k: number, out: I420Frame, o: FaceState | null, drv: I420Frame, d: FaceState | null, mesh: { xy: Float64Array; iod: number } | null): Promise<void> {
    const [s0, s1] = this.window;
    if (k >= s0 && k < s1) {
      await this.out.see(i420(out), o);
      await this.driver.see(i420(drv), d);
    }
    if (k > s0 && k < s1 && this.prevOut) {
      let sum = 0;
      const n = out.width * out.height;
      for (let i = 0; i < n; i++) sum += Math.abs(out.data[i] - this.prevOut.data[i]);
      this.y.push(sum / n);
      if (o && this.prevOutLm) this.raw.push(landmarkMotion(o.rawLandmarks, this.prevOutLm, o.pose.scale));
      if (d && this.prevDrvLm) this.rawDriver.push(landmarkMotion(d.rawLandmarks, this.prevDrvLm, d.pose.scale));
      if (mesh && this.prevMesh) this.mesh.push(landmarkMotion(mesh.xy, this.prevMesh, mesh.iod, 2));
    }
    this.prevOut = out;
    this.prevOutLm = o ? Float32Array.from(o.rawLandmarks) : null;
    this.prevDrvLm = d ? Float32Array.from(d.rawLandmarks) : null;
    this.prevMesh = mesh ? Float64Array.from(mesh.xy) : null;
  }

  /** The window's figures; `floor` from judgeFloor (measured separately, on the neutral render). */
  result(floor: number): JitterMetrics {
    return {
      jitterY: mean(this.y),
      jitterLandmarks: mean(this.raw),
      driverJitterLandmarks: mean(this.rawDriver),
      jitterFixedCrop: mean(this.out.motion),
      driverJitterFixedCrop: mean(this.driver.motion),
      jitterFloor: floor,
      jitterMesh: mean(this.mesh),
    };
  }
}
