// The coordinator's model: the trainable vector, the optimizer's state, the model version (the round
// of the last update applied) and the published copy that GetModel serves. It is the only state
// here that a released sum changes, and it changes in one place: apply().
import type { ModelParameters, ModelVersionRef } from '@tensorguard/secure-agg/service';
import { flatten, sizeOf, type ParamSpec } from '../models/model.js';
import { createOptimizer, type Optimizer, type OptimizerOptions } from '../optimizer.js';
import { parametersFingerprint } from '../aggregation.js';

export interface OptimizerSnapshot {
  step: number;
  slots: Record<string, Float32Array>;
}

export class ModelState {
  /** The trainable parameters, flat in `specs` order; apply() updates it in place. */
  readonly params: Float32Array;
  readonly #optimizer: Optimizer;
  /** optimizer.ema's decay, and the running average (not bias-corrected) of the iterates. */
  readonly #emaDecay: number | undefined;
  #ema: Float32Array | null;
  /** Updates applied (the optimizer's step count), for the average's bias correction. */
  #steps = 0;
  #version = 0;
  #published!: ModelParameters;

  /**
   * @param specs    the trainable parameters, in the order of the flat vector
   * @param initial  every trainable parameter's initial values by name (RangeError when one is
   *                 missing or has the wrong size)
   */
  constructor(
    readonly specs: readonly ParamSpec[],
    initial: Record<string, ArrayLike<number>>,
    optimizer: OptimizerOptions,
  ) {
    this.params = flatten(specs, initial);
    this.#optimizer = createOptimizer(this.params.length, optimizer);
    this.#emaDecay = optimizer.ema?.decay;
    this.#ema = this.#emaDecay === undefined ? null : new Float32Array(this.params.length);
    this.#publish();
  }

  /**
   * The job's output parameters: with optimizer.ema, the bias-corrected average of the iterates
   * after each update, ema_t / (1 − decay^t) with ema_t = decay·ema_{t−1} + (1 − decay)·params_t
   * (as Adam corrects its moments); otherwise, and before any update, `params` itself. A copy
   * when averaged; `params` (not a copy) otherwise.
   */
  output(): Float32Array {
    if (!this.#ema || this.#steps === 0) return this.params;
    const c = 1 - this.#emaDecay! ** this.#steps;
    const out = new Float32Array(this.#ema.length);
    for (let i = 0; i < out.length; i++) out[i] = this.#ema[i]! / c;
    return out;
  }

  /** Round number of the last update applied to `params` (0 before any). */
  get version(): number {
    return this.#version;
  }

  /** The published model version (a copy, so that a round in flight cannot change it). */
  get published(): ModelParameters {
    return this.#published;
  }

  get optimizerKind(): Optimizer['kind'] {
    return this.#optimizer.kind;
  }

  /** The optimizer's step count and slots, as a checkpoint stores them. */
  optimizerState(): OptimizerSnapshot {
    const st = this.#optimizer.state();
    if (this.#ema) st.slots.ema = Float32Array.from(this.#ema);
    return st;
  }

  /** The trainable parameters by name: views into `params` (not copies). */
  named(): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    let o = 0;
    for (const s of this.specs) {
      const n = sizeOf(s.shape);
      out[s.name] = this.params.subarray(o, o + n);
      o += n;
    }
    return out;
  }

  /**
   * Restores a checkpointed state: parameters by name, the optimizer's state, and the version.
   * RangeError when a parameter or optimizer slot has the wrong size.
   */
  restore(named: Record<string, ArrayLike<number>>, optimizer: OptimizerSnapshot, version: number): void {
    this.params.set(flatten(this.specs, named));
    this.#optimizer.load(optimizer);
    this.#steps = optimizer.step;
    if (this.#ema) {
      const saved = optimizer.slots.ema;
      if (saved && saved.length !== this.#ema.length)
        throw new RangeError(
          `optimizer state 'ema' has ${saved.length} entries, expected ${this.#ema.length}`,
        );
      // A checkpoint written without the average starts it at the iterate (output = params).
      const c = 1 - this.#emaDecay! ** this.#steps;
      this.#ema = saved ? Float32Array.from(saved) : this.params.map((v) => v * c);
    }
    this.#version = version;
    this.#publish();
  }

  /**
   * Applies round `round`'s gradient estimate with the optimizer and publishes the result as
   * version `round`. A non-finite update (an empty shard's 0/0, a diverged model) would poison
   * every later round and the checkpoint: it throws, and `params` and the version stay as they were.
   */
  apply(round: number, grad: Float32Array): void {
    const before = Float32Array.from(this.params);
    this.#optimizer.step(this.params, grad);
    if (!this.params.every(Number.isFinite) || !grad.every(Number.isFinite)) {
      this.params.set(before);
      throw new Error(
        `round ${round}: the update made the model parameters non-finite (NaN or Infinity); the job stops and nothing non-finite is checkpointed (check the dataset for empty shards or extreme values, or lower the learning rate)`,
      );
    }
    this.#steps++;
    if (this.#ema) {
      const d = this.#emaDecay!;
      for (let i = 0; i < this.#ema.length; i++) this.#ema[i] = d * this.#ema[i]! + (1 - d) * this.params[i]!;
    }
    this.#version = round;
    this.#publish();
  }

  /** The published parameters when `v` names them (round and fingerprint), else undefined. */
  modelFor(v: ModelVersionRef): ModelParameters | undefined {
    const p = this.#published;
    return p.version.round === v.round && p.version.fingerprint === v.fingerprint ? p : undefined;
  }

  #publish(): void {
    const parameters = Float32Array.from(this.params);
    this.#published = {
      version: { round: this.#version, fingerprint: parametersFingerprint(parameters) },
      parameters,
    };
  }
}
