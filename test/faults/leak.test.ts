// npm test: alone — compares memory and handles with a baseline.
/**
 * Nothing leaks across session create/close cycles: N × (POST /v1/sessions with a fresh minimal
 * offer → DELETE), no media. Each session starts and stops its peer connection (UDP sockets,
 * timers) and its worker threads, so a leak of any of them shows here.
 *
 * Bounds, against a baseline taken after 10 warm-up cycles (read from /metrics, so the figures
 * are the server's own): resident memory within 64 MiB, V8 heap used within 32 MiB, active
 * handles within 3, and no session left. N is `XPL_LEAK_CYCLES` (default 50 in `npm test`,
 * ≈ 20 s on 2 cores; `loadtest/soak.ts` runs 1,000).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverExists, startServer } from '../support/server.ts';
import { cycle, leakSample, sleep } from './support.ts';

const skip = !serverExists() && 'server/main.ts not present';
const CYCLES = Number(process.env.XPL_LEAK_CYCLES ?? 50);
const RSS_BOUND_MIB = 64;
const HEAP_BOUND_MIB = 32;
const HANDLES_BOUND = 3;

test(`${CYCLES} session create/close cycles: memory, heap and handles return to the baseline`, { skip, timeout: 60_000 + CYCLES * 3000 }, async (t) => {
  const srv = await startServer({ args: ['--renderer', 'passthrough', '--log-level', 'warn'] });
  try {
    for (let i = 0; i < 10; i++) await cycle(srv.url);
    await sleep(1000);
    const base = await leakSample(srv.url);
    const t0 = performance.now();
    let peak = base.rssMiB;
    for (let i = 0; i < CYCLES; i++) {
      await cycle(srv.url);
      if (i % 20 === 19) {
        const s = await leakSample(srv.url);
        peak = Math.max(peak, s.rssMiB);
        t.diagnostic(`${i + 1} cycles (${((performance.now() - t0) / (i + 1)).toFixed(0)} ms each): RSS ${s.rssMiB.toFixed(0)} MiB, heap ${s.heapMiB.toFixed(0)} MiB, handles ${s.handles}`);
      }
    }
    await sleep(3000);
    const end = await leakSample(srv.url);
    t.diagnostic(`baseline ${JSON.stringify(base)} → after ${CYCLES} cycles ${JSON.stringify(end)}; RSS peak ${peak.toFixed(0)} MiB`);
    const list = (await (await fetch(`${srv.url}/v1/sessions`)).json()).sessions;
    assert.equal(list.length, 0, 'no session left');
    assert.equal(end.sessions, 0, 'xpl_sessions back to 0');
    assert.ok(end.rssMiB - base.rssMiB <= RSS_BOUND_MIB, `RSS grew ${(end.rssMiB - base.rssMiB).toFixed(0)} MiB > ${RSS_BOUND_MIB}`);
    assert.ok(end.heapMiB - base.heapMiB <= HEAP_BOUND_MIB, `heap grew ${(end.heapMiB - base.heapMiB).toFixed(0)} MiB > ${HEAP_BOUND_MIB}`);
    assert.ok(end.handles - base.handles <= HANDLES_BOUND, `active handles ${base.handles} → ${end.handles}`);
  } finally {
    assert.equal(await srv.stop(), 0);
  }
});
