/** Public types of the face module. Coordinates are image pixels unless stated otherwise. */

export interface Point2 {
  x: number;
  y: number;
}

export interface FaceBox {
  /** Top-left corner and size, image pixels. */
  x: number;
  y: number;
  width: number;
  height: number;
}

/** One BlazeFace detection. */
export interface FaceDetection {
  box: FaceBox;
  /** 0..1 */
  score: number;
  /** right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion (subject's left/right). */
  keypoints: Point2[];
}

/** A rotated square region of interest: centre, side, rotation (radians, image y-down, +ve = clockwise). */
export interface FaceRoi {
  cx: number;
  cy: number;
  size: number;
  angle: number;
}

export interface HeadPose {
  /** Degrees: yaw + = subject turns to their left (image right), pitch + = looks down, roll + = clockwise in the image. */
  yaw: number;
  pitch: number;
  roll: number;
  /** Row-major 3×3 rotation from the canonical face frame to image space (x right, y down, z away from camera). */
  rotation: Float64Array;
  /** Image position of the canonical origin (face centre), pixels; z is relative depth. */
  translation: [number, number, number];
  /** Pixels per canonical unit. */
  scale: number;
}

export interface Gaze {
  /** Iris centre offset within each eye, normalised by eye width (x) — roughly −0.5..0.5; + = image right / down. */
  left: Point2;
  right: Point2;
  /** Mean of both eyes. */
  x: number;
  y: number;
}

export interface FaceState {
  timestampMs: number;
  /** 0..1 mesh confidence (FaceMesh face flag). */
  confidence: number;
  /** True when this frame ran the detector (lost or drifting). */
  redetected: boolean;
  box: FaceBox;
  roi: FaceRoi;
  /** 468 smoothed landmarks, x,y,z interleaved (image pixels; z relative depth in pixel units). */
  landmarks: Float32Array;
  /** 468 unsmoothed landmarks (same layout). */
  rawLandmarks: Float32Array;
  /** Iris centres (image pixels): subject's left and right eye; null when iris was not run. */
  irisLeft: Point2 | null;
  irisRight: Point2 | null;
  pose: HeadPose;
  /** Landmarks in the canonical face frame (pose removed), x,y,z interleaved, 468·3. */
  canonical: Float32Array;
  /** canonical − canonical mean shape, x,y,z interleaved, 468·3. */
  expression: Float32Array;
  /** Eye openness: lid gap / eye width (≈0.25–0.35 open, < 0.1 closed). Subject's left/right. */
  eyeOpenLeft: number;
  eyeOpenRight: number;
  /** Mouth openness: inner-lip gap / mouth width (0 closed, ≈0.5–0.8 wide open). */
  mouthOpen: number;
  gaze: Gaze;
}

/** Where pixels come from: RGBA or I420, both read without conversion of the whole frame. */
export type FaceImage =
  | { kind: 'rgba'; width: number; height: number; data: Uint8Array }
  | { kind: 'i420'; width: number; height: number; data: Uint8Array };
