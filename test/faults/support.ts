/** Shared helpers of the fault tests: windows over what a peer received, and small waits. */
import type { Peer } from '../support/wrtc-peer.ts';
import { metricValue } from '../../loadtest/scrape.ts';
import { minimalOffer } from './offer.ts';

export interface WindowStats {
  /** Frames received in the window. */
  frames: number;
  fps: number;
  /** Frames with a readable id and a latency. */
  measured: number;
  p50: number;
  p95: number;
  max: number;
  /** Longest time between consecutive received frames inside the window (ms), including the edges. */
  maxGapMs: number;
}

export function pctl(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Statistics of the frames `peer` received between `from` and `to` (performance.now() times). */
export function windowStats(peer: Peer, from: number, to: number): WindowStats {
  const inWin = peer.received.filter((r) => r.at >= from && r.at < to);
  const lat = inWin.filter((r) => r.latencyMs !== null).map((r) => r.latencyMs!).sort((a, b) => a - b);
  let prev = from;
  let maxGap = 0;
  for (const r of inWin) {
    maxGap = Math.max(maxGap, r.at - prev);
    prev = r.at;
  }
  maxGap = Math.max(maxGap, to - prev);
  return {
    frames: inWin.length,
    fps: (inWin.length * 1000) / Math.max(1, to - from),
    measured: lat.length,
    p50: pctl(lat, 0.5),
    p95: pctl(lat, 0.95),
    max: lat.length ? lat[lat.length - 1] : Number.NaN,
    maxGapMs: maxGap,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function fmtWindow(w: WindowStats): string {
  return `${w.frames} frames (${w.fps.toFixed(1)} fps), latency p50 ${w.p50.toFixed(0)} / p95 ${w.p95.toFixed(0)} / max ${w.max.toFixed(0)} ms over ${w.measured}, longest gap ${w.maxGapMs.toFixed(0)} ms`;
}

/** First frame received at or after `t`, if any. */
export function firstFrameAfter(peer: Peer, t: number): number | undefined {
  return peer.received.find((r) => r.at >= t)?.at;
}

export interface LeakSample {
  rssMiB: number;
  heapMiB: number;
  handles: number;
  sessions: number;
}

export async function leakSample(url: string): Promise<LeakSample> {
  const t = await (await fetch(`${url}/metrics`)).text();
  return {
    rssMiB: metricValue(t, 'xpl_process_resident_memory_bytes') / 2 ** 20,
    heapMiB: metricValue(t, 'xpl_nodejs_heap_size_used_bytes') / 2 ** 20,
    handles: metricValue(t, 'xpl_nodejs_active_handles_total'),
    sessions: metricValue(t, 'xpl_sessions') || 0,
  };
}

/** One create/close cycle; throws with the status and body when either step fails. */
export async function cycle(url: string): Promise<void> {
  const r = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: minimalOffer() });
  const body = await r.text();
  if (r.status !== 201) throw new Error(`POST /v1/sessions → ${r.status}: ${body.slice(0, 300)}`);
  const d = await fetch(new URL(r.headers.get('location')!, url), { method: 'DELETE' });
  await d.arrayBuffer();
  if (d.status !== 204) throw new Error(`DELETE → ${d.status}`);
}
