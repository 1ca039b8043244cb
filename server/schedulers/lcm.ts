/**
 * Latent Consistency Model (LCM) scheduler for the streaming X-Portrait pipeline, with no
 * onnxruntime dependency: the renderer runs the graphs, this file does the arithmetic.
 *
 * Definitions (the same as the exporter's `models/xportrait/stages.py:lcm_schedule`):
 *   betas      = linspace(√β_start, √β_end, N)²             ("scaled_linear", float64)
 *   ᾱ_t        = Π_{i ≤ t} (1 − β_i)
 *   origin     = [(i+1)·⌊N/M⌋ − 1 for i in 0..M−1] reversed  (M = original_inference_steps)
 *   timesteps  = origin[::⌊M/n⌋][:n]   ("skip-step": the LCM paper's rule; n = inference steps)
 *             or origin[⌊i·M/n⌋], i < n ("linspace": diffusers' current LCMScheduler rule)
 *   s          = t · timestep_scaling
 *   c_skip(t)  = σ_d² / (s² + σ_d²),  c_out(t) = s / √(s² + σ_d²)
 *   x̂0         = (x − √(1−ᾱ_t)·ε) / √ᾱ_t                      (epsilon prediction)
 *   denoised   = c_skip·x + c_out·x̂0
 *   next x     = √ᾱ_{t'}·denoised + √(1−ᾱ_{t'})·z             (z ~ N(0, I); last step: x = denoised)
 */

export interface LcmConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'scaled_linear';
  predictionType: 'epsilon';
  originalInferenceSteps: number;
  timestepScaling: number;
  sigmaData: number;
  /** How the n inference timesteps are picked from the original schedule. */
  timestepRule: TimestepRule;
  /** Timesteps the pack ships for some step counts ("1", "2", "4", "8"); checked against the formula. */
  timesteps?: Record<string, number[]>;
}

export const TIMESTEP_RULES = ['skip-step', 'linspace'] as const;
export type TimestepRule = (typeof TIMESTEP_RULES)[number];

export const DEFAULT_LCM_CONFIG: LcmConfig = {
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: 'scaled_linear',
  predictionType: 'epsilon',
  originalInferenceSteps: 50,
  timestepScaling: 10,
  sigmaData: 0.5,
  timestepRule: 'skip-step',
};

export const MAX_STEPS = 8;

/** Thrown for a scheduler section that is not an LCM schedule this code can run. */
export class SchedulerConfigError extends Error {}

function num(o: Record<string, unknown>, key: string, fallback: number | undefined): number {
  const v = o[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new SchedulerConfigError(`scheduler.${key} must be a finite number, got ${JSON.stringify(o[key])}`);
  return v;
}

/** Reads and validates a manifest's `scheduler` section (snake_case keys, as the exporter writes them). */
export function lcmConfigFromManifest(section: unknown): LcmConfig {
  if (!section || typeof section !== 'object' || Array.isArray(section)) throw new SchedulerConfigError('scheduler section missing or not an object');
  const s = section as Record<string, unknown>;
  if (s.type !== 'lcm') throw new SchedulerConfigError(`scheduler.type must be "lcm", got ${JSON.stringify(s.type)}`);
  const schedule = s.beta_schedule ?? 'scaled_linear';
  if (schedule !== 'scaled_linear') throw new SchedulerConfigError(`scheduler.beta_schedule "${String(schedule)}" is not supported (only scaled_linear)`);
  const pred = s.prediction_type ?? 'epsilon';
  if (pred !== 'epsilon') throw new SchedulerConfigError(`scheduler.prediction_type "${String(pred)}" is not supported (only epsilon)`);
  const d = DEFAULT_LCM_CONFIG;
  const rule = s.timestep_rule ?? 'skip-step';
  if (!(TIMESTEP_RULES as readonly unknown[]).includes(rule)) throw new SchedulerConfigError(`scheduler.timestep_rule ${JSON.stringify(rule)} is not one of ${TIMESTEP_RULES.join(', ')}`);
  const cfg: LcmConfig = {
    timestepRule: rule as TimestepRule,
    numTrainTimesteps: num(s, 'num_train_timesteps', d.numTrainTimesteps),
    betaStart: num(s, 'beta_start', d.betaStart),
    betaEnd: num(s, 'beta_end', d.betaEnd),
    betaSchedule: 'scaled_linear',
    predictionType: 'epsilon',
    originalInferenceSteps: num(s, 'original_inference_steps', d.originalInferenceSteps),
    timestepScaling: num(s, 'timestep_scaling', d.timestepScaling),
    sigmaData: num(s, 'sigma_data', d.sigmaData),
  };
  if (!Number.isInteger(cfg.numTrainTimesteps) || cfg.numTrainTimesteps < 2) throw new SchedulerConfigError('scheduler.num_train_timesteps must be an integer ≥ 2');
  if (!Number.isInteger(cfg.originalInferenceSteps) || cfg.originalInferenceSteps < MAX_STEPS || cfg.originalInferenceSteps > cfg.numTrainTimesteps) {
    throw new SchedulerConfigError(`scheduler.original_inference_steps must be an integer in ${MAX_STEPS}..num_train_timesteps`);
  }
  if (s.timesteps !== undefined) {
    if (!s.timesteps || typeof s.timesteps !== 'object') throw new SchedulerConfigError('scheduler.timesteps must be an object');
    const ts: Record<string, number[]> = {};
    for (const [k, v] of Object.entries(s.timesteps as Record<string, unknown>)) {
      if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) throw new SchedulerConfigError(`scheduler.timesteps["${k}"] must be a list of integers`);
      ts[k] = v as number[];
    }
    cfg.timesteps = ts;
    // The pack's shipped values must be the ones this scheduler computes (else the pack was made
    // for another schedule and the graphs' baked ᾱ table would disagree with our re-noising).
    for (const [k, v] of Object.entries(ts)) {
      const n = Number(k);
      if (!Number.isInteger(n) || n < 1 || n > MAX_STEPS) continue;
      const want = lcmTimesteps(cfg, n);
      if (want.length !== v.length || want.some((t, i) => t !== v[i])) {
        throw new SchedulerConfigError(`scheduler.timesteps["${k}"] = [${v.join(',')}] differs from the LCM formula [${want.join(',')}] (rule ${cfg.timestepRule})`);
      }
    }
  }
  return cfg;
}

/** ᾱ_t for every training timestep (float64). */
export function alphasCumprod(cfg: LcmConfig): Float64Array {
  const N = cfg.numTrainTimesteps;
  const a = Math.sqrt(cfg.betaStart);
  const b = Math.sqrt(cfg.betaEnd);
  const out = new Float64Array(N);
  let prod = 1;
  for (let i = 0; i < N; i++) {
    const r = a + ((b - a) * i) / (N - 1);
    prod *= 1 - r * r;
    out[i] = prod;
  }
  return out;
}

/** The LCM timesteps for `n` inference steps (1..8), highest first, by the config's rule (or `rule`). */
export function lcmTimesteps(cfg: LcmConfig, n: number, rule: TimestepRule = cfg.timestepRule): number[] {
  if (!Number.isInteger(n) || n < 1 || n > MAX_STEPS) throw new RangeError(`LCM steps must be an integer in 1..${MAX_STEPS}, got ${n}`);
  const M = cfg.originalInferenceSteps;
  const c = Math.floor(cfg.numTrainTimesteps / M);
  const origin: number[] = [];
  for (let i = M - 1; i >= 0; i--) origin.push((i + 1) * c - 1);
  if (rule === 'linspace') return Array.from({ length: n }, (_, i) => origin[Math.floor((i * M) / n)]);
  const skip = Math.floor(M / n);
  const out: number[] = [];
  for (let i = 0; i < origin.length && out.length < n; i += skip) out.push(origin[i]);
  return out;
}

/** c_skip and c_out of the LCM boundary condition at timestep t. */
export function lcmBoundary(cfg: LcmConfig, t: number): { cSkip: number; cOut: number } {
  const s = t * cfg.timestepScaling;
  const sd2 = cfg.sigmaData * cfg.sigmaData;
  return { cSkip: sd2 / (s * s + sd2), cOut: s / Math.sqrt(s * s + sd2) };
}

export interface StepCoefficients {
  t: number;
  alphaCumprod: number;
  sqrtAlphaCumprod: number;
  sqrtOneMinusAlphaCumprod: number;
  cSkip: number;
  cOut: number;
}

/** Deterministic PRNG (mulberry32) with Box–Muller normals; state is two numbers, so it resets cheaply. */
export class GaussianRng {
  private state: number;
  private spare: number | null = null;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  reset(seed = this.seed): void {
    this.state = seed >>> 0;
    this.spare = null;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box–Muller, both outputs used). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = this.uniform();
    while (u <= 1e-12) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  fill(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }
}

export interface StepResult {
  /** The sample for the next step (re-noised to its timestep), or `denoised` after the last step. */
  prevSample: Float32Array;
  denoised: Float32Array;
}

/**
 * One stream's LCM state: the step schedule and a seeded noise source. `reset()` returns it to
 * the state right after construction (same noise sequence again).
 */
export class LcmScheduler {
  readonly config: LcmConfig;
  readonly alphas: Float64Array;
  timesteps: number[] = [];
  coefficients: StepCoefficients[] = [];
  readonly rng: GaussianRng;

  constructor(config: LcmConfig = DEFAULT_LCM_CONFIG, seed = 0) {
    this.config = config;
    this.alphas = alphasCumprod(config);
    this.rng = new GaussianRng(seed);
  }

  get numSteps(): number {
    return this.timesteps.length;
  }

  setTimesteps(n: number, rule: TimestepRule = this.config.timestepRule): number[] {
    this.timesteps = lcmTimesteps(this.config, n, rule);
    this.coefficients = this.timesteps.map((t) => this.coefficientsAt(t));
    return this.timesteps;
  }

  coefficientsAt(t: number): StepCoefficients {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphas.length) throw new RangeError(`timestep ${t} outside 0..${this.alphas.length - 1}`);
    const a = this.alphas[t];
    return { t, alphaCumprod: a, sqrtAlphaCumprod: Math.sqrt(a), sqrtOneMinusAlphaCumprod: Math.sqrt(1 - a), ...lcmBoundary(this.config, t) };
  }

  /** Standard normal noise of `size` values from this stream's generator. */
  noise(size: number): Float32Array {
    return this.rng.fill(new Float32Array(size));
  }

  reset(): void {
    this.rng.reset();
  }

  /**
   * One LCM step at step index `k` (0-based in the current schedule): `eps` is the UNet's epsilon
   * prediction for `sample`. `noise` (same size) is used to re-noise to the next timestep; drawn
   * from the stream's generator when omitted. After the last step prevSample = denoised.
   */
  step(eps: Float32Array, k: number, sample: Float32Array, noise?: Float32Array): StepResult {
    if (k < 0 || k >= this.coefficients.length) throw new RangeError(`step index ${k} outside the ${this.coefficients.length}-step schedule (call setTimesteps first)`);
    if (eps.length !== sample.length) throw new RangeError('eps and sample differ in size');
    const c = this.coefficients[k];
    const denoised = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x0 = (sample[i] - c.sqrtOneMinusAlphaCumprod * eps[i]) / c.sqrtAlphaCumprod;
      denoised[i] = c.cSkip * sample[i] + c.cOut * x0;
    }
    if (k === this.coefficients.length - 1) return { prevSample: denoised, denoised };
    const z = noise ?? this.noise(sample.length);
    return { prevSample: this.renoise(denoised, k + 1, z), denoised };
  }

  /** √ᾱ_{t_k}·x + √(1−ᾱ_{t_k})·z, the input of step k from a clean estimate. */
  renoise(x: Float32Array, k: number, z: Float32Array, out = new Float32Array(x.length)): Float32Array {
    const c = this.coefficients[k];
    for (let i = 0; i < x.length; i++) out[i] = c.sqrtAlphaCumprod * x[i] + c.sqrtOneMinusAlphaCumprod * z[i];
    return out;
  }
}
