/** FaceMesh (468 points) and Iris landmark models on onnxruntime-node. */
import { cropToImage, cropToTensor } from './sampler.ts';
import { loadFaceModels, ort, type FaceModelOptions } from './models.ts';
import type { FaceImage, FaceRoi, Point2 } from './types.ts';
import { LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS } from './landmarks.ts';

const MESH_IN = 192;
const IRIS_IN = 64;

export interface MeshResult {
  /** 468 × (x, y, z), image pixels. */
  landmarks: Float32Array;
  /** 0..1 */
  confidence: number;
}

export interface IrisResult {
  /** Iris centre, image pixels. */
  center: Point2;
  /** Iris radius, image pixels. */
  radius: number;
}

export class FaceMesher {
  private readonly meshIn = new Float32Array(MESH_IN * MESH_IN * 3);
  private readonly irisIn = new Float32Array(IRIS_IN * IRIS_IN * 3);
  private constructor(
    private readonly meshSession: ort.InferenceSession,
    private readonly irisSession: ort.InferenceSession,
  ) {}

  static async create(opts: FaceModelOptions = {}): Promise<FaceMesher> {
    const m = await loadFaceModels(opts);
    return new FaceMesher(m.facemesh, m.iris);
  }

  async landmarks(img: FaceImage, roi: FaceRoi, out = new Float32Array(468 * 3)): Promise<MeshResult> {
    cropToTensor(img, roi, MESH_IN, this.meshIn, '01');
    const res = await this.meshSession.run({ input_1: new ort.Tensor('float32', this.meshIn, [1, MESH_IN, MESH_IN, 3]) });
    const raw = res.Identity_2.data as Float32Array;
    const conf = (res.Identity_1.data as Float32Array)[0];
    const k = roi.size / MESH_IN;
    for (let i = 0; i < 468; i++) {
      const [x, y] = cropToImage(roi, MESH_IN, raw[3 * i], raw[3 * i + 1]);
      out[3 * i] = x;
      out[3 * i + 1] = y;
      out[3 * i + 2] = raw[3 * i + 2] * k;
    }
    return { landmarks: out, confidence: conf };
  }

  /** The iris ROI MediaPipe uses: centred on the eye corners, 2.3 × their distance, eye line level. */
  static eyeRoi(lm: Float32Array, corners: readonly [number, number]): FaceRoi {
    const [a, b] = corners;
    const ax = lm[3 * a];
    const ay = lm[3 * a + 1];
    const bx = lm[3 * b];
    const by = lm[3 * b + 1];
    const dist = Math.hypot(bx - ax, by - ay);
    // angle of the line from the image-left corner to the image-right corner
    const angle = ax < bx ? Math.atan2(by - ay, bx - ax) : Math.atan2(ay - by, ax - bx);
    return { cx: (ax + bx) / 2, cy: (ay + by) / 2, size: dist * 2.3, angle };
  }

  /** Iris of one eye. The model was trained on one eye side; the subject's left eye is mirrored into it. */
  async iris(img: FaceImage, lm: Float32Array, eye: 'left' | 'right'): Promise<IrisResult> {
    const roi = FaceMesher.eyeRoi(lm, eye === 'left' ? LEFT_EYE_CORNERS : RIGHT_EYE_CORNERS);
    const flip = eye === 'left';
    cropToTensor(img, roi, IRIS_IN, this.irisIn, '01', flip);
    const res = await this.irisSession.run({ input_1: new ort.Tensor('float32', this.irisIn, [1, IRIS_IN, IRIS_IN, 3]) });
    const raw = res.Identity.data as Float32Array;
    // 71 eye-contour points then 5 iris points (centre first), x,y,z in crop pixels
    const base = 71 * 3;
    const fx = (u: number): number => (flip ? IRIS_IN - u : u);
    const [cx, cy] = cropToImage(roi, IRIS_IN, fx(raw[base]), raw[base + 1]);
    let r = 0;
    for (let k = 1; k < 5; k++) r += Math.hypot(raw[base + 3 * k] - raw[base], raw[base + 3 * k + 1] - raw[base + 1]);
    return { center: { x: cx, y: cy }, radius: (r / 4) * (roi.size / IRIS_IN) };
  }
}
