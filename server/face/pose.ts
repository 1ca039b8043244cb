/**
 * Rigid fit of a canonical shape to observed landmarks (similarity transform, Horn's quaternion
 * method = Umeyama for 3-D), rotation ↔ Euler angles, and small 3-D helpers.
 */

/** Row-major 3×3. */
export type Mat3 = Float64Array;

export interface Similarity {
  scale: number;
  rotation: Mat3;
  translation: [number, number, number];
}

/** Jacobi eigen-decomposition of a symmetric n×n matrix (row-major); returns eigenvalues and column eigenvectors. */
function jacobiEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] * A[p * n + q];
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p];
          const akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k];
          const aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p];
          const vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = A[i * n + i];
  return { values, vectors: V };
}

/**
 * Least-squares similarity `dst ≈ s·R·src + t` over the listed point indices (all when omitted).
 * src/dst are x,y,z interleaved. Optional per-point weights.
 */
export function fitSimilarity(src: ArrayLike<number>, dst: ArrayLike<number>, indices?: ArrayLike<number>, weights?: ArrayLike<number>): Similarity {
  const n = indices ? indices.length : src.length / 3;
  const idx = (k: number): number => (indices ? indices[k] : k);
  let wsum = 0;
  const ms = [0, 0, 0];
  const md = [0, 0, 0];
  for (let k = 0; k < n; k++) {
    const i = idx(k);
    const w = weights ? weights[k] : 1;
    wsum += w;
    for (let d = 0; d < 3; d++) {
      ms[d] += w * src[3 * i + d];
      md[d] += w * dst[3 * i + d];
    }
  }
  for (let d = 0; d < 3; d++) {
    ms[d] /= wsum;
    md[d] /= wsum;
  }
  // cross-covariance S[a][b] = Σ w (src_a)(dst_b)
  const S = new Float64Array(9);
  let varS = 0;
  for (let k = 0; k < n; k++) {
    const i = idx(k);
    const w = weights ? weights[k] : 1;
    const a0 = src[3 * i] - ms[0];
    const a1 = src[3 * i + 1] - ms[1];
    const a2 = src[3 * i + 2] - ms[2];
    const b0 = dst[3 * i] - md[0];
    const b1 = dst[3 * i + 1] - md[1];
    const b2 = dst[3 * i + 2] - md[2];
    S[0] += w * a0 * b0; S[1] += w * a0 * b1; S[2] += w * a0 * b2;
    S[3] += w * a1 * b0; S[4] += w * a1 * b1; S[5] += w * a1 * b2;
    S[6] += w * a2 * b0; S[7] += w * a2 * b1; S[8] += w * a2 * b2;
    varS += w * (a0 * a0 + a1 * a1 + a2 * a2);
  }
  const [Sxx, Sxy, Sxz, Syx, Syy, Syz, Szx, Szy, Szz] = S;
  // Horn's symmetric 4×4
  const N = new Float64Array([
    Sxx + Syy + Szz, Syz - Szy, Szx - Sxz, Sxy - Syx,
    Syz - Szy, Sxx - Syy - Szz, Sxy + Syx, Szx + Sxz,
    Szx - Sxz, Sxy + Syx, -Sxx + Syy - Szz, Syz + Szy,
    Sxy - Syx, Szx + Sxz, Syz + Szy, -Sxx - Syy + Szz,
  ]);
  const { values, vectors } = jacobiEigen(N, 4);
  let best = 0;
  for (let i = 1; i < 4; i++) if (values[i] > values[best]) best = i;
  const q0 = vectors[0 * 4 + best];
  const qx = vectors[1 * 4 + best];
  const qy = vectors[2 * 4 + best];
  const qz = vectors[3 * 4 + best];
  const R = quatToMat(q0, qx, qy, qz);
  // scale = Σ b·(R a) / Σ |a|²
  let num = 0;
  for (let k = 0; k < n; k++) {
    const i = idx(k);
    const w = weights ? weights[k] : 1;
    const a0 = src[3 * i] - ms[0];
    const a1 = src[3 * i + 1] - ms[1];
    const a2 = src[3 * i + 2] - ms[2];
    const r0 = R[0] * a0 + R[1] * a1 + R[2] * a2;
    const r1 = R[3] * a0 + R[4] * a1 + R[5] * a2;
    const r2 = R[6] * a0 + R[7] * a1 + R[8] * a2;
    num += w * (r0 * (dst[3 * i] - md[0]) + r1 * (dst[3 * i + 1] - md[1]) + r2 * (dst[3 * i + 2] - md[2]));
  }
  const scale = num / varS;
  const t: [number, number, number] = [0, 0, 0];
  for (let d = 0; d < 3; d++) t[d] = md[d] - scale * (R[d * 3] * ms[0] + R[d * 3 + 1] * ms[1] + R[d * 3 + 2] * ms[2]);
  return { scale, rotation: R, translation: t };
}

export function quatToMat(w: number, x: number, y: number, z: number): Mat3 {
  const n = Math.hypot(w, x, y, z) || 1;
  w /= n; x /= n; y /= n; z /= n;
  return new Float64Array([
    1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
  ]);
}

export function matMul(a: Mat3, b: Mat3): Mat3 {
  const r = new Float64Array(9);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) r[i * 3 + j] = a[i * 3] * b[j] + a[i * 3 + 1] * b[3 + j] + a[i * 3 + 2] * b[6 + j];
  return r;
}

export function transpose(a: Mat3): Mat3 {
  return new Float64Array([a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8]]);
}

const D2R = Math.PI / 180;

/**
 * R = Rz(roll) · Ry(yaw) · Rx(pitch), angles in degrees, in image axes (x right, y down, z away).
 * With these axes: +yaw turns the face towards image right, +pitch tilts the chin down... (see
 * test/face/pose.test.ts for the checked conventions).
 */
export function eulerToMat(yawDeg: number, pitchDeg: number, rollDeg: number): Mat3 {
  const y = yawDeg * D2R;
  const p = pitchDeg * D2R;
  const r = rollDeg * D2R;
  const Rx = new Float64Array([1, 0, 0, 0, Math.cos(p), -Math.sin(p), 0, Math.sin(p), Math.cos(p)]);
  const Ry = new Float64Array([Math.cos(y), 0, Math.sin(y), 0, 1, 0, -Math.sin(y), 0, Math.cos(y)]);
  const Rz = new Float64Array([Math.cos(r), -Math.sin(r), 0, Math.sin(r), Math.cos(r), 0, 0, 0, 1]);
  return matMul(Rz, matMul(Ry, Rx));
}

export function matToEuler(R: Mat3): { yaw: number; pitch: number; roll: number } {
  // R20 = −sin(yaw); R21 = cos(yaw) sin(pitch); R22 = cos(yaw) cos(pitch); R10 = sin(roll) cos(yaw); R00 = cos(roll) cos(yaw)
  const sy = Math.max(-1, Math.min(1, -R[6]));
  const yaw = Math.asin(sy);
  const pitch = Math.atan2(R[7], R[8]);
  const roll = Math.atan2(R[3], R[0]);
  return { yaw: yaw / D2R, pitch: pitch / D2R, roll: roll / D2R };
}

/** Rotation angle (degrees) between two rotations. */
export function rotationDistanceDeg(a: Mat3, b: Mat3): number {
  const m = matMul(transpose(a), b);
  const c = Math.max(-1, Math.min(1, (m[0] + m[4] + m[8] - 1) / 2));
  return Math.acos(c) / D2R;
}

/** Scales a rotation's angle by k (axis kept): for pose gain. */
export function scaleRotation(R: Mat3, k: number): Mat3 {
  const c = Math.max(-1, Math.min(1, (R[0] + R[4] + R[8] - 1) / 2));
  const angle = Math.acos(c);
  if (angle < 1e-9) return new Float64Array([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  let ax = R[7] - R[5];
  let ay = R[2] - R[6];
  let az = R[3] - R[1];
  const n = Math.hypot(ax, ay, az) || 1;
  ax /= n; ay /= n; az /= n;
  const h = (angle * k) / 2;
  return quatToMat(Math.cos(h), ax * Math.sin(h), ay * Math.sin(h), az * Math.sin(h));
}
