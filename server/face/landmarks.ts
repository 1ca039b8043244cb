/**
 * Index sets of the 468-point FaceMesh topology. "Left"/"right" are the subject's: the subject's
 * right eye appears on the image's left.
 */

/** Subject's right eye contour (image left), a closed loop: upper lid 33→133 then lower lid back. */
export const RIGHT_EYE_UPPER = [33, 246, 161, 160, 159, 158, 157, 173, 133];
export const RIGHT_EYE_LOWER = [33, 7, 163, 144, 145, 153, 154, 155, 133];
export const LEFT_EYE_UPPER = [263, 466, 388, 387, 386, 385, 384, 398, 362];
export const LEFT_EYE_LOWER = [263, 249, 390, 373, 374, 380, 381, 382, 362];
/** Eye corners: [outer, inner]. */
export const RIGHT_EYE_CORNERS = [33, 133] as const;
export const LEFT_EYE_CORNERS = [263, 362] as const;
/** Mid upper / lower lid points used for openness. */
export const RIGHT_EYE_LIDS = [159, 145] as const;
export const LEFT_EYE_LIDS = [386, 374] as const;

/** Inner lip loop (upper inner lip 78→308, lower inner lip back). */
export const INNER_LIP_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308];
export const INNER_LIP_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308];
export const OUTER_LIP_UPPER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291];
export const OUTER_LIP_LOWER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291];
export const MOUTH_CORNERS = [78, 308] as const;
export const MOUTH_MID = [13, 14] as const;

/** Face silhouette, a closed loop starting at the forehead top, clockwise in the image. */
export const SILHOUETTE = [
  10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
  109,
];

export const NOSE_TIP = 1;
export const CHIN = 152;
export const FOREHEAD = 10;

export const NUM_LANDMARKS = 468;

/** The bounding box of the 468 mesh points (x, y, z triplets), in the landmarks' pixel space. */
export function landmarkBox(lm: Float32Array): { x: number; y: number; width: number; height: number } {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < 468; i++) {
    x0 = Math.min(x0, lm[3 * i]);
    x1 = Math.max(x1, lm[3 * i]);
    y0 = Math.min(y0, lm[3 * i + 1]);
    y1 = Math.max(y1, lm[3 * i + 1]);
  }
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}
