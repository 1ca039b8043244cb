/**
 * What flows on a session's media port, between the main thread (RTP in and out) and its loop
 * worker (decode → rate cap → render → encode). Only encoded frames cross it, a few kilobytes
 * each, as transferred ArrayBuffers; pictures never leave the worker. Control calls (set-up,
 * portrait, params, …) go over the worker's RPC channel instead (worker.ts).
 *
 * Times: each thread has its own performance.now() origin, so `arrival` is the main thread's
 * clock, carried through untouched and read only by the main thread.
 */

/** Main → worker. */
export type ToWorker =
  /** One assembled driving frame. `tid`: VP8 temporal layer (undefined when the sender uses none). */
  | { t: 'frame'; data: ArrayBuffer; keyframe: boolean; tid?: number; rtp: number; arrival: number }
  /** The next encoded frame must be a keyframe (a viewer joined, a receiver lost a packet, …). */
  | { t: 'keyframe' }
  /** Whether anyone receives the output: without an audience nothing is encoded. */
  | { t: 'audience'; on: boolean }
  /** The frame budget's cap (frame-budget.ts): the rate cap keeps the lower of it and maxFps. */
  | { t: 'budget'; fps: number }
  /** Paused: the loop keeps decoding (the reference chain) but renders nothing new; the last output is held. */
  | { t: 'pause'; on: boolean };

export interface StageTimes {
  decodeMs: number;
  renderMs: number;
  backgroundMs: number;
  encodeMs: number;
}

/** Worker → main. */
export type FromWorker =
  /** A driving frame was decoded (input stats). */
  | { t: 'decoded'; ms: number; width: number; height: number }
  /** A frame was rendered (whether or not anyone receives it). */
  | { t: 'rendered'; renderMs: number; backgroundMs: number; faceFound: boolean | null }
  /** An encoded output frame, for the sender and every viewer. `arrival` is the driving frame's (shifted by the time held, for a held frame). */
  | { t: 'out'; data: ArrayBuffer; keyframe: boolean; rtp: number; arrival: number; times: StageTimes; held: boolean }
  /** A frame left the loop without output (rate cap, a newer frame replaced it, decoder behind). */
  | { t: 'dropped'; stage: 'decode' | 'rate' | 'render' | 'encode' }
  /** The decoder cannot go on without a keyframe from the sender. */
  | { t: 'need-keyframe'; reason: string; error: boolean }
  /** A render has taken longer than the session's render timeout: the worker is stuck and must be replaced. */
  | { t: 'stalled'; ms: number }
  /** A codec failed in a way the loop handled (the encoder was replaced, …); for logs and metrics. */
  | { t: 'codec-restart'; codec: 'decoder' | 'encoder'; reason: string };
