/**
 * The long checks that do not fit in `npm test`: a soak under load with network faults, and
 * 1,000 session create/close cycles. Starts its own server (loopback only), stops by itself.
 *
 *   node --import tsx loadtest/soak.ts [--minutes 10] [--sessions 2] [--renderer passthrough]
 *                                      [--cycles 1000] [--json out/loadtest/soak.json]
 *
 * Phase 1 (`--minutes`): `--sessions` peers stream through one loopback UDP relay each; every
 * 30 s the relay cycles through the faults of test/faults/network.test.ts (5 % loss, 20 % loss,
 * reordering, 200 ms jitter, a 3 s outage), each for 5 s, then 25 s clean. Every clean period
 * must end with every session delivering ≥ 20 fps and glass-to-glass p95 ≤ 200 ms over its last
 * 2 s; server RSS is logged every 30 s and must not grow by more than 128 MiB from the end of the
 * first clean period to the end.
 * Phase 2 (`--cycles`): create/close cycles as test/faults/leak.test.ts, with the same bounds
 * (RSS ≤ +64 MiB, heap ≤ +32 MiB, handles ≤ +3 against a baseline after 10 warm-up cycles).
 *
 * Exit status 0 when every check held, 1 otherwise; the figures are printed and, with --json, written.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { startServer } from '../test/support/server.ts';
import { startUdpRelay, type Fault, type UdpRelay } from '../test/support/udp-relay.ts';
import { startPeer, type Peer } from '../test/support/wrtc-peer.ts';
import { cycle, leakSample, sleep, windowStats, fmtWindow } from '../test/faults/support.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '2' },
    renderer: { type: 'string', default: 'passthrough' },
    cycles: { type: 'string', default: '1000' },
    json: { type: 'string' },
  },
});
const MINUTES = Number(values.minutes);
const SESSIONS = Number(values.sessions);
const CYCLES = Number(values.cycles);
const FAULTS: Array<[string, Fault]> = [
  ['5 % loss', { loss: 0.05 }],
  ['20 % loss', { loss: 0.2 }],
  ['reorder', { reorder: 0.2, reorderDelayMs: 40 }],
  ['200 ms jitter', { jitterMs: 200 }],
  ['3 s outage', { outage: true }],
];

const failures: string[] = [];
const report: Record<string, unknown> = { startedAt: new Date().toISOString(), minutes: MINUTES, sessions: SESSIONS, renderer: values.renderer, cycles: CYCLES };
const log = (s: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

const srv = await startServer({ args: ['--renderer', String(values.renderer), '--ice-address', '127.0.0.1', '--output', '256x256', '--log-level', 'warn', '--max-sessions', String(SESSIONS + 4)] });
try {
  // Phase 1: streaming under cycling faults.
  if (MINUTES > 0) {
    const pairs: Array<{ relay: UdpRelay; peer: Peer }> = [];
    for (let i = 0; i < SESSIONS; i++) {
      const relay = await startUdpRelay();
      const peer = await startPeer({ baseUrl: srv.url, query: { renderer: String(values.renderer) }, width: 320, height: 240, fps: 30, mungeOffer: relay.mungeOffer, mungeAnswer: relay.mungeAnswer });
      pairs.push({ relay, peer });
    }
    await Promise.all(pairs.map((p) => p.peer.waitFor((s) => s.received >= 30, 30_000)));
    const end = performance.now() + MINUTES * 60_000;
    const rounds: unknown[] = [];
    let firstRss: number | undefined;
    let lastRss = 0;
    for (let k = 0; performance.now() < end; k++) {
      const [name, fault] = FAULTS[k % FAULTS.length];
      for (const p of pairs) p.relay.setFault(fault);
      await sleep(name.includes('outage') ? 3000 : 5000);
      for (const p of pairs) p.relay.setFault({});
      await sleep(25_000);
      const now = performance.now();
      const tails = pairs.map((p) => windowStats(p.peer, now - 2000, now));
      const rss = (await leakSample(srv.url)).rssMiB;
      firstRss ??= rss;
      lastRss = rss;
      const ok = tails.every((w) => w.fps >= 20 && w.p95 <= 200);
      if (!ok) failures.push(`after ${name} (round ${k}): ${tails.map(fmtWindow).join(' | ')}`);
      rounds.push({ fault: name, ok, rssMiB: rss, tails });
      log(`round ${k} ${name}: ${ok ? 'recovered' : 'NOT recovered'}; RSS ${rss.toFixed(0)} MiB; ${tails.map((w) => `${w.fps.toFixed(0)} fps p95 ${w.p95.toFixed(0)} ms`).join(', ')}`);
    }
    if (firstRss !== undefined && lastRss - firstRss > 128) failures.push(`RSS grew ${(lastRss - firstRss).toFixed(0)} MiB during the soak`);
    report.stream = { rounds, rssStartMiB: firstRss, rssEndMiB: lastRss };
    for (const p of pairs) {
      const status = await p.peer.close();
      if (status !== 204) failures.push(`a soak session's DELETE answered ${status}`);
      await p.relay.close();
    }
  }

  // Phase 2: create/close cycles.
  if (CYCLES > 0) {
    for (let i = 0; i < 10; i++) await cycle(srv.url);
    await sleep(1000);
    const base = await leakSample(srv.url);
    const t0 = performance.now();
    for (let i = 0; i < CYCLES; i++) {
      await cycle(srv.url);
      if (i % 100 === 99) {
        const s = await leakSample(srv.url);
        log(`${i + 1} cycles (${((performance.now() - t0) / (i + 1)).toFixed(0)} ms each): RSS ${s.rssMiB.toFixed(0)} MiB, heap ${s.heapMiB.toFixed(0)} MiB, handles ${s.handles}`);
      }
    }
    await sleep(3000);
    const after = await leakSample(srv.url);
    report.cycles = { base, after, msPerCycle: (performance.now() - t0) / CYCLES };
    log(`cycles: baseline ${JSON.stringify(base)} → ${JSON.stringify(after)}`);
    if (after.sessions !== 0) failures.push(`${after.sessions} session(s) left after the cycles`);
    if (after.rssMiB - base.rssMiB > 64) failures.push(`RSS grew ${(after.rssMiB - base.rssMiB).toFixed(0)} MiB over ${CYCLES} cycles`);
    if (after.heapMiB - base.heapMiB > 32) failures.push(`heap grew ${(after.heapMiB - base.heapMiB).toFixed(0)} MiB over ${CYCLES} cycles`);
    if (after.handles - base.handles > 3) failures.push(`active handles ${base.handles} → ${after.handles}`);
  }
} catch (err) {
  failures.push(`soak aborted: ${(err as Error).message}`);
} finally {
  const code = await srv.stop();
  if (code !== 0) failures.push(`server exited with ${code}`);
}
report.failures = failures;
if (values.json) await writeFile(String(values.json), JSON.stringify(report, null, 1));
console.log(failures.length ? `soak FAILED:\n  ${failures.join('\n  ')}` : 'soak passed');
process.exit(failures.length ? 1 : 0);
