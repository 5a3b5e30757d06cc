// Optimizers on the flat parameter vector, run by the coordinator on the decoded noisy sum. They
// only post-process the released sum, so they cost no privacy. State is a list of named flat
// vectors so the checkpoint can store it as safetensors tensors.

export type OptimizerKind = 'sgd' | 'adam';

/**
 * How the step size changes over the job: `warmupRounds` updates of linear warm-up, then constant,
 * linear decay towards 0, or cosine decay towards 0 over the remaining updates.
 */
export interface LearningRateSchedule {
  kind: 'constant' | 'linear' | 'cosine';
  warmupRounds: number;
}

/**
 * The factor on the base learning rate of update k (k = 0, 1, ..., total - 1):
 *   warm-up, k < w:  (k + 1) / w
 *   then, f = (k - w) / (total - w):  constant 1, linear 1 - f, cosine (1 + cos(π f)) / 2.
 * Every factor is in (0, 1]: the first update after warm-up takes the full step, none takes 0.
 * bench/scripts/finetune_torch.py defines the same factors for the torch side.
 */
export function learningRateFactor(schedule: LearningRateSchedule, k: number, total: number): number {
  const w = Math.min(schedule.warmupRounds, total);
  if (k < w) return (k + 1) / w;
  if (schedule.kind === 'constant' || total <= w) return 1;
  const f = Math.min(k - w, total - w - 1) / (total - w);
  return schedule.kind === 'linear' ? 1 - f : 0.5 * (1 + Math.cos(Math.PI * f));
}

export interface OptimizerOptions {
  kind: OptimizerKind;
  /** Step size (default 0.1 for sgd, 1e-3 for adam). */
  learningRate: number;
  /** Heavy-ball momentum for sgd (default 0: plain SGD). */
  momentum?: number;
  /** Adam's β1, β2, ε (defaults 0.9, 0.999, 1e-8). */
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** The step size's schedule (default constant); non-constant ones need `totalSteps`. */
  schedule?: LearningRateSchedule;
  /** Updates the schedule spans (the job's rounds). */
  totalSteps?: number;
  /**
   * Exponential moving average of the iterates (ModelState keeps it; the optimizer ignores it):
   * the job's output, evaluated and exported, is the average, while training continues from
   * the iterate.
   */
  ema?: { decay: number };
}

export interface Optimizer {
  readonly kind: OptimizerKind;
  /** Updates `params` in place with the gradient estimate `grad` (same length). */
  step(params: Float32Array, grad: Float32Array): void;
  /** Named state vectors (and the step count) for the checkpoint. */
  state(): { step: number; slots: Record<string, Float32Array> };
  load(state: { step: number; slots: Record<string, Float32Array> }): void;
}

function checkLengths(params: Float32Array, grad: Float32Array): void {
  if (params.length !== grad.length) {
    throw new RangeError(`gradient has ${grad.length} entries, parameters ${params.length}`);
  }
}

function loadSlot(slots: Record<string, Float32Array>, name: string, size: number): Float32Array {
  const s = slots[name];
  if (!s || s.length !== size) {
    throw new RangeError(`optimizer state '${name}' has ${s?.length ?? 'no'} entries, expected ${size}`);
  }
  return Float32Array.from(s);
}

export class SgdMomentum implements Optimizer {
  readonly kind = 'sgd';
  private velocity: Float32Array;
  private t = 0;
  constructor(
    size: number,
    readonly learningRate: number,
    readonly momentum = 0,
    private readonly factor: (k: number) => number = () => 1,
  ) {
    this.velocity = new Float32Array(size);
  }
  step(params: Float32Array, grad: Float32Array): void {
    checkLengths(params, grad);
    const lr = this.learningRate * this.factor(this.t);
    const mu = this.momentum;
    const v = this.velocity;
    for (let i = 0; i < params.length; i++) {
      v[i] = mu * v[i]! + grad[i]!;
      params[i] = params[i]! - lr * v[i]!;
    }
    this.t++;
  }
  state() {
    return { step: this.t, slots: { velocity: Float32Array.from(this.velocity) } };
  }
  load(state: { step: number; slots: Record<string, Float32Array> }): void {
    this.velocity = loadSlot(state.slots, 'velocity', this.velocity.length);
    this.t = state.step;
  }
}

export class Adam implements Optimizer {
  readonly kind = 'adam';
  private m: Float32Array;
  private v: Float32Array;
  private t = 0;
  constructor(
    size: number,
    readonly learningRate: number,
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    readonly epsilon = 1e-8,
    private readonly factor: (k: number) => number = () => 1,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }
  step(params: Float32Array, grad: Float32Array): void {
    checkLengths(params, grad);
    const lr = this.learningRate * this.factor(this.t);
    this.t++;
    const { beta1: b1, beta2: b2, epsilon: eps } = this;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    for (let i = 0; i < params.length; i++) {
      const g = grad[i]!;
      const m = (this.m[i] = b1 * this.m[i]! + (1 - b1) * g);
      const v = (this.v[i] = b2 * this.v[i]! + (1 - b2) * g * g);
      params[i] = params[i]! - (lr * (m / c1)) / (Math.sqrt(v / c2) + eps);
    }
  }
  state() {
    return { step: this.t, slots: { m: Float32Array.from(this.m), v: Float32Array.from(this.v) } };
  }
  load(state: { step: number; slots: Record<string, Float32Array> }): void {
    this.m = loadSlot(state.slots, 'm', this.m.length);
    this.v = loadSlot(state.slots, 'v', this.v.length);
    this.t = state.step;
  }
}

export function createOptimizer(size: number, opts: OptimizerOptions): Optimizer {
  const schedule = opts.schedule ?? { kind: 'constant', warmupRounds: 0 };
  const total = opts.totalSteps;
  if ((schedule.kind !== 'constant' || schedule.warmupRounds > 0) && total === undefined)
    throw new RangeError(`a '${schedule.kind}' learning-rate schedule needs the job's total steps`);
  // Past the planned steps (a job resumed with more rounds) the last factor stays.
  const factor = (k: number) => learningRateFactor(schedule, Math.min(k, (total ?? 1) - 1), total ?? 1);
  switch (opts.kind) {
    case 'sgd':
      return new SgdMomentum(size, opts.learningRate, opts.momentum ?? 0, factor);
    case 'adam':
      return new Adam(size, opts.learningRate, opts.beta1, opts.beta2, opts.epsilon, factor);
  }
}
