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
    this.#publish();
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
    return this.#optimizer.state();
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
