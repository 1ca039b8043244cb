/**
 * Scripted head motions for synthetic driving videos: pose (yaw/pitch/roll), blinks, smile and
 * mouth opening as Motion objects for the mesh-warp rig, plus the ground-truth values each frame
 * carries.
 */
import { CANONICAL_FACE } from '../server/face/canonical-data.ts';
import { eulerToMat } from '../server/face/pose.ts';
import { NUM_LANDMARKS } from '../server/face/landmarks.ts';
import { identityMotion, jawOpenExpression, type Motion } from '../server/renderers/mesh-warp/rig.ts';

export interface ScriptFrame {
  yaw: number;
  pitch: number;
  roll: number;
  /** 0 open … 1 closed */
  blink: number;
  /** 0 … 1 */
  smile: number;
  /** 0 … 1 (1 ≈ jaw dropped by a third of the eye distance) */
  mouth: number;
}

/** Canonical-frame expression offsets for smile and mouth opening (hand-built, smooth falloffs). */
export function scriptedExpression(smile: number, mouth: number, out: Float32Array = new Float32Array(NUM_LANDMARKS * 3)): Float32Array {
  jawOpenExpression(mouth, out);
  const cornerL = 291;
  const cornerR = 61;
  for (let i = 0; i < NUM_LANDMARKS; i++) {
    const x = CANONICAL_FACE[3 * i];
    const y = CANONICAL_FACE[3 * i + 1];
    if (smile > 0) {
      for (const [c, sgn] of [[cornerL, 1], [cornerR, -1]] as const) {
        const d2 = (x - CANONICAL_FACE[3 * c]) ** 2 + (y - CANONICAL_FACE[3 * c + 1]) ** 2;
        const w = Math.exp(-d2 / (2 * 0.12 ** 2));
        out[3 * i] += sgn * 0.09 * smile * w;
        out[3 * i + 1] -= 0.07 * smile * w;
      }
    }
  }
  return out;
}

export function motionForFrame(f: ScriptFrame, out: Motion = identityMotion()): Motion {
  out.rotation = eulerToMat(f.yaw, f.pitch, f.roll);
  out.tx = 0;
  out.ty = 0;
  out.scale = 1;
  out.expression = scriptedExpression(f.smile, f.mouth, out.expression ?? undefined);
  out.eyeLeft = 1 - f.blink;
  out.eyeRight = 1 - f.blink;
  out.gazeX = 0;
  out.gazeY = 0;
  return out;
}

const ease = (t: number): number => 0.5 - 0.5 * Math.cos(Math.PI * Math.max(0, Math.min(1, t)));
/** 0 → 1 → 0 over [a, b]. */
const bump = (t: number, a: number, b: number): number => (t <= a || t >= b ? 0 : Math.sin((Math.PI * (t - a)) / (b - a)));

/**
 * The default script (seconds): 0–1 still (neutral, for calibration and jitter), 1–3 yaw ±20°,
 * 3–4.5 pitch ±12°, 4.5–6 roll ±12°, 6–7 two blinks, 7–8.5 smile, 8.5–10.5 mouth opens twice,
 * 10.5–11 still.
 */
export function defaultScript(fps = 30, seconds = 11): ScriptFrame[] {
  const out: ScriptFrame[] = [];
  for (let k = 0; k < Math.round(fps * seconds); k++) {
    const t = k / fps;
    out.push({
      yaw: 20 * Math.sin((2 * Math.PI * (t - 1)) / 2) * (t > 1 && t < 3 ? 1 : 0),
      pitch: 12 * Math.sin((2 * Math.PI * (t - 3)) / 1.5) * (t > 3 && t < 4.5 ? 1 : 0),
      roll: 12 * Math.sin((2 * Math.PI * (t - 4.5)) / 1.5) * (t > 4.5 && t < 6 ? 1 : 0),
      blink: Math.max(bump(t, 6.1, 6.4), bump(t, 6.6, 6.9)),
      smile: bump(t, 7, 8.5) > 0 ? ease(bump(t, 7, 8.5) * 1.6) : 0,
      mouth: Math.max(bump(t, 8.5, 9.4), bump(t, 9.5, 10.4)),
    });
  }
  return out;
}
