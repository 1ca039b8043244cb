/**
 * Admission control (server/session/capacity.ts) on a simulated clock and CPU counter: the cost
 * of a session is learnt from the load the running sessions make, sessions still starting count
 * at that cost, and a session that would take the load past the budget is refused with a reason.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Capacity } from '../../server/session/capacity.ts';

function sim(maxLoad: number, cores: number, perSession: number) {
  let t = 0;
  let cpu = 0;
  let sessions = 0;
  const c = new Capacity(maxLoad, () => sessions, { cores, now: () => t, cpuSeconds: async () => cpu, sampleEveryMs: 3_600_000 });
  /** `seconds` of running the sessions at `perSession` cores each, sampled every second. */
  const run = async (seconds: number) => {
    for (let i = 0; i < seconds; i++) {
      t += 1000;
      cpu += sessions * perSession;
      await c.sample();
    }
  };
  const start = () => {
    c.started();
    sessions++;
  };
  return { c, run, start };
}

test('sessions are admitted while the learnt cost fits the budget; a burst counts the sessions still starting', async () => {
  const s = sim(0.9, 2, 0.5); // budget 1.8 cores; sessions cost 0.5: three fit
  try {
    assert.equal(s.c.admit().ok, true, 'the first session, before anything is known');
    s.start();
    await s.run(8);
    assert.equal(s.c.report().sessionCores, 0.5);
    assert.equal(s.c.admit().ok, true);
    s.start();
    assert.equal(s.c.admit().ok, true, '0.5 running + 0.5 starting + 0.5 = 1.5');
    s.start();
    const burst = s.c.admit();
    assert.equal(burst.ok, false, 'a fourth right away: 0.5 running + 1.0 starting + 0.5 = 2.0 > 1.8');
    await s.run(8);
    const later = s.c.admit();
    assert.equal(later.ok, false, 'and once the three show in the load');
    assert.match((later as { reason: string }).reason, /at capacity: it uses 1\.\d\d cores .*a session costs ~0\.\d\d.*budget is 1\.80 cores \(--max-load\)/);
    assert.equal(s.c.report().estimate, 3);
  } finally {
    s.c.stop();
  }
});

test('a larger budget admits more: the same sessions on 4 cores', async () => {
  const s = sim(0.9, 4, 0.5); // 3.6 cores: seven fit
  try {
    s.start();
    await s.run(8);
    for (let i = 0; i < 6; i++) {
      assert.equal(s.c.admit().ok, true, `session ${i + 2}`);
      s.start();
      await s.run(6);
    }
    assert.equal(s.c.admit().ok, false, 'the eighth does not');
    assert.equal(s.c.report().estimate, 7);
  } finally {
    s.c.stop();
  }
});
