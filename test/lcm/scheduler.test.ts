// LCM scheduler: timesteps and coefficients against the LCM definitions, written out here
// independently of server/schedulers/lcm.ts; step() arithmetic; seeded noise; manifest parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LCM_CONFIG, GaussianRng, LcmScheduler, alphasCumprod, lcmConfigFromManifest, lcmTimesteps } from '../../server/schedulers/lcm.ts';

// The published LCM schedules for 1, 2, 4, 8 steps (50 original steps over 1000 train steps).
const EXPECTED: Record<number, number[]> = {
  1: [999],
  2: [999, 499],
  4: [999, 759, 519, 279],
  8: [999, 879, 759, 639, 519, 399, 279, 159],
};

/** ᾱ_t by the textbook product, in float64, with betas from scaled_linear. */
function alphaBar(t: number): number {
  let p = 1;
  for (let i = 0; i <= t; i++) {
    const b = (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
    p *= 1 - b;
  }
  return p;
}

test('timesteps equal the LCM schedule for 1, 2, 4, 8 steps', () => {
  const s = new LcmScheduler();
  for (const [n, want] of Object.entries(EXPECTED)) {
    assert.deepEqual(s.setTimesteps(Number(n)), want, `${n} steps`);
    assert.deepEqual(lcmTimesteps(DEFAULT_LCM_CONFIG, Number(n)), want);
  }
  // other counts follow the same rule: origin[::⌊50/n⌋][:n]
  assert.deepEqual(s.setTimesteps(3), [999, 679, 359]);
  assert.deepEqual(s.setTimesteps(5), [999, 799, 599, 399, 199]);
  assert.throws(() => s.setTimesteps(0), RangeError);
  assert.throws(() => s.setTimesteps(9), RangeError);
  assert.throws(() => s.setTimesteps(2.5), RangeError);
});

test('ᾱ, c_skip and c_out follow the definitions (timestep scaling 10, σ_data 0.5)', () => {
  const a = alphasCumprod(DEFAULT_LCM_CONFIG);
  assert.equal(a.length, 1000);
  // values the exporter wrote into the tiny pack's manifest (torch float64)
  assert.ok(Math.abs(a[999] - 0.004660098513077241) < 1e-15, `ᾱ_999 = ${a[999]}`);
  assert.ok(Math.abs(a[499] - 0.27766965045646774) < 1e-14, `ᾱ_499 = ${a[499]}`);
  for (const t of [0, 159, 279, 499, 999]) assert.ok(Math.abs(a[t] - alphaBar(t)) < 1e-12, `ᾱ_${t}`);
  const s = new LcmScheduler();
  for (const n of [1, 2, 4, 8]) {
    s.setTimesteps(n);
    for (const c of s.coefficients) {
      const st = c.t * 10;
      assert.ok(Math.abs(c.cSkip - 0.25 / (st * st + 0.25)) < 1e-18, `c_skip(${c.t})`);
      assert.ok(Math.abs(c.cOut - st / Math.sqrt(st * st + 0.25)) < 1e-15, `c_out(${c.t})`);
      assert.ok(Math.abs(c.sqrtAlphaCumprod ** 2 + c.sqrtOneMinusAlphaCumprod ** 2 - 1) < 1e-12);
      assert.equal(c.alphaCumprod, a[c.t]);
    }
  }
  // the exporter's manifest value for t = 499
  s.setTimesteps(2);
  assert.ok(Math.abs(s.coefficients[1].cSkip - 1.004012021999791e-8) < 1e-20);
  assert.ok(Math.abs(s.coefficients[1].cOut - 0.99999999497994) < 1e-14);
});

test('step(): x̂0, boundary condition, re-noising, last step returns denoised', () => {
  const s = new LcmScheduler(DEFAULT_LCM_CONFIG, 7);
  s.setTimesteps(4);
  const x = Float32Array.from([0.5, -1.25, 2, 0.1]);
  const eps = Float32Array.from([0.3, 0.2, -0.7, 1.1]);
  const z = Float32Array.from([1, -1, 0.5, 0]);
  const r = s.step(eps, 1, x, z);
  const a = alphaBar(759), an = alphaBar(519);
  const st = 7590;
  const cs = 0.25 / (st * st + 0.25), co = st / Math.sqrt(st * st + 0.25);
  for (let i = 0; i < 4; i++) {
    const x0 = (x[i] - Math.sqrt(1 - a) * eps[i]) / Math.sqrt(a);
    const den = cs * x[i] + co * x0;
    assert.ok(Math.abs(r.denoised[i] - den) < 1e-5, `denoised[${i}] ${r.denoised[i]} vs ${den}`);
    const prev = Math.sqrt(an) * den + Math.sqrt(1 - an) * z[i];
    assert.ok(Math.abs(r.prevSample[i] - prev) < 1e-5, `prev[${i}]`);
  }
  const last = s.step(eps, 3, x, z);
  assert.deepEqual(last.prevSample, last.denoised);
  assert.throws(() => s.step(eps, 4, x, z), RangeError);
});

test('seeded noise: deterministic, resettable, standard normal', () => {
  const a = new GaussianRng(42).fill(new Float32Array(20000));
  const b = new GaussianRng(42).fill(new Float32Array(20000));
  const c = new GaussianRng(43).fill(new Float32Array(20000));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  let m = 0, v = 0;
  for (const x of a) m += x;
  m /= a.length;
  for (const x of a) v += (x - m) ** 2;
  v /= a.length;
  assert.ok(Math.abs(m) < 0.03, `mean ${m}`);
  assert.ok(Math.abs(v - 1) < 0.05, `variance ${v}`);
  const s = new LcmScheduler(DEFAULT_LCM_CONFIG, 5);
  const n1 = s.noise(16);
  s.noise(3);
  s.reset();
  assert.deepEqual(s.noise(16), n1, 'reset restarts the noise sequence');
});

test('config from a manifest: snake_case keys, shipped timesteps checked against the formula', () => {
  const section = {
    type: 'lcm', num_train_timesteps: 1000, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012,
    prediction_type: 'epsilon', original_inference_steps: 50, timestep_scaling: 10, sigma_data: 0.5,
    timesteps: { '1': [999], '2': [999, 499], '4': [999, 759, 519, 279], '8': EXPECTED[8] },
  };
  const cfg = lcmConfigFromManifest(section);
  assert.equal(cfg.timestepScaling, 10);
  assert.equal(cfg.sigmaData, 0.5);
  assert.throws(() => lcmConfigFromManifest({ ...section, timesteps: { '2': [999, 500] } }), /timesteps\["2"\] = \[999,500\] differs from the LCM formula \[999,499\]/);
  assert.throws(() => lcmConfigFromManifest({ ...section, type: 'ddim' }), /type must be "lcm"/);
  assert.throws(() => lcmConfigFromManifest({ ...section, prediction_type: 'v_prediction' }), /prediction_type/);
  assert.throws(() => lcmConfigFromManifest({ ...section, sigma_data: 'x' }), /sigma_data/);
  // a different scaling changes the coefficients
  const s = new LcmScheduler(lcmConfigFromManifest({ ...section, timestep_scaling: 1, timesteps: undefined }));
  s.setTimesteps(1);
  assert.ok(Math.abs(s.coefficients[0].cSkip - 0.25 / (999 * 999 + 0.25)) < 1e-15);
});
