// Checkpoint compatibility with the published X-Portrait model: our full-size network (built on the
// meta device, no memory) against the state-dict list of upstream's own model definition
// (test/fixtures/xportrait-upstream-keys.json, made by models/xportrait/upstream_keys.py), key for
// key and through the project's checkpoint loader.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pythonSkipReason, runPy, ROOT } from './helpers.ts';

const skip = pythonSkipReason();
if (skip) console.log(`# skipping upstream key tests: ${skip}`);
const work = mkdtempSync(join(tmpdir(), 'xpl-upstream-'));
after(() => rmSync(work, { recursive: true, force: true }));
const FIXTURE = join(ROOT, 'test', 'fixtures', 'xportrait-upstream-keys.json');
const SCHEDULE = ['betas', 'alphas_cumprod', 'alphas_cumprod_prev', 'sqrt_alphas_cumprod',
  'sqrt_one_minus_alphas_cumprod', 'log_one_minus_alphas_cumprod', 'sqrt_recip_alphas_cumprod',
  'sqrt_recipm1_alphas_cumprod', 'posterior_variance', 'posterior_log_variance_clipped',
  'posterior_mean_coef1', 'posterior_mean_coef2', 'logvar'];

let cached: any;
function check(): any {
  if (cached) return cached;
  const r = runPy(['-m', 'models.xportrait.selftest', 'upstream', FIXTURE, work], 120_000);
  assert.equal(r.status, 0, `selftest upstream failed:\n${r.stderr.slice(-3000)}`);
  cached = JSON.parse(r.stdout.trim().split('\n').pop()!);
  return cached;
}

test('the upstream key list says where it comes from', { skip }, () => {
  const p = check().provenance;
  assert.equal(p.source, 'https://github.com/bytedance/X-Portrait');
  assert.match(p.commit, /^[0-9a-f]{40}$/);
  assert.equal(p.config, 'config/cldm_v15_appearance_pose_local_mm.yaml');
  assert.match(p.date, /^\d{4}-\d{2}-\d{2}$/);
  assert.ok(Object.keys(p.stubs).length > 0, 'the stubs used to build upstream are not recorded');
  assert.equal(p.state_dict_keys, check().fixture_keys);
});

test('our full-size network equals upstream key for key (names, shapes, dtypes)', { skip }, () => {
  const r = check();
  assert.deepEqual(r.model_not_upstream, [], 'keys of our network that upstream does not have');
  assert.deepEqual(r.upstream_not_model, [], 'upstream network keys our network lacks');
  assert.deepEqual(r.different, [], 'keys whose shape or dtype differ');
  assert.equal(r.consumed, r.model_keys);
  assert.ok(r.model_keys > 2800, `only ${r.model_keys} keys: the full-size config was not built`);
  assert.equal(r.model_parameters, r.provenance.parameters, 'parameter count differs from upstream');
});

test('an upstream-shaped checkpoint loads through checkpoint.py; every other key is ignored by a named rule', { skip }, () => {
  const r = check();
  assert.equal(r.load.ok, true, r.load.error);
  assert.equal(r.load.loaded, r.model_keys, 'not every key of our network was consumed');
  assert.equal(r.load.recomputed, 0, 'upstream carries the position codes; none should be recomputed');
  assert.deepEqual(r.uncovered, [], 'upstream keys covered by no rule');
  assert.deepEqual(Object.keys(r.ignored), ['schedule']);
  assert.deepEqual([...r.ignored.schedule].sort(), [...SCHEDULE].sort());
  assert.deepEqual(r.load.ignored_by_rule, { cond_stage_model: 0, schedule: SCHEDULE.length });
  assert.equal(r.load.loaded + r.load.ignored, r.fixture_keys);
});

test('a wrong shape, a missing upstream key or an unknown key fails naming the key', { skip }, () => {
  const { wrong_shape: w, missing: m, unknown: u } = check();
  assert.equal(w.ok, false, 'a wrong shape was accepted');
  assert.match(w.error, /0 missing, 0 unexpected, 1 wrong shape/);
  assert.ok(w.error.includes(`${w.key}: checkpoint (${w.shape.join(', ')}) vs model (${w.model_shape.join(', ')})`), w.error);
  assert.equal(m.ok, false, 'a checkpoint lacking an upstream key was accepted');
  assert.match(m.error, /1 missing, 0 unexpected, 0 wrong shape/);
  assert.match(m.error, new RegExp(`missing keys \\(1\\):\\n\\s+${m.key.replaceAll('.', '\\.')}$`, 'm'));
  assert.equal(u.ok, false, 'a key outside the network prefixes and the ignore rules was accepted');
  assert.match(u.error, /1 outside the network prefixes and not covered by an ignore rule/);
  assert.ok(u.error.includes(u.key), u.error);
});
