// The DP-SGD gradient phase on a worker: per-example gradients of the trainable parameters,
// each clipped to ℓ2 norm C, summed. The result's norm is at most C × batch and, what the
// privacy analysis needs, adding or removing one record changes it by at most C.
//
// DpClippingEngine is @tensorguard/dp/tfjs's engine (probes, ghost norms and book-keeping: one
// forward and one backward pass per chunk, no per-example loop) behind the `ClippingEngine`
// seam. The batch-of-one loop in clipping-reference.ts is the reference the tests compare with.
//
// With lanes (DpClippingEngine.start), the step runs in dp's DataParallelLanes: the batch split
// across child processes that each hold a copy of the model, their clipped sums added. Σᵢ clip(gᵢ, C)
// is a sum over examples, so the result is the one-process sum up to float rounding; it helps
// models whose kernels are too small for TensorFlow's intra-op threads (dp/src/tfjs/lanes.ts).
import {
  DataParallelLanes,
  DpModel,
  assertSupported,
  crossEntropySum,
  dpSgdStep,
  flattenSum,
  tf,
  type ClipMethod,
  type ClippingOptions,
  type ModelRecipe,
  type NormMethod,
} from '@tensorguard/dp/tfjs';
import { lengthGroups, type LengthGroup } from './models/length-groups.js';
import type { ModelDef, Tensor } from './models/model.js';
import { sizeOf, trainableSpecs } from './models/model.js';

export interface ClippedSum {
  /** Σ_i clip(g_i, C), length = trainable parameter count. */
  sum: Float32Array;
  /** Examples in the batch (private: never leaves the worker outside the secure sum). */
  batchSize: number;
  /** Examples whose gradient norm exceeded C (private, for local diagnostics only). */
  clipped: number;
}

export interface ClippingEngine {
  /**
   * The clipped sum of a batch. An engine that computes in this process may answer at once; one
   * that computes elsewhere (lanes) answers with a promise. Callers await either.
   */
  clippedSum(x: Tensor, labels: Tensor, clipNorm: number): ClippedSum | Promise<ClippedSum>;
  /** Replaces the trainable parameters (a new model version from the coordinator). */
  setTrainable(flat: Float32Array): void;
  dispose(): void;
}

export interface DpClippingEngineOptions {
  /**
   * Examples per chunk (default 256): traced activations and output gradients live for one chunk,
   * so this bounds memory; the clipped sum does not depend on it beyond float rounding.
   */
  maxChunkSize?: number;
  /** dp's clipped-sum method (default 'bookkeeping'). */
  clipMethod?: ClipMethod;
  /** dp's per-site norm method (default 'auto'). */
  normMethod?: NormMethod;
  /**
   * Sequence models (ModelDef.sequenceLengths): compute the step and the evaluation on
   * length-grouped micro-batches, each cut to its longest record (default true; the sum is the
   * padded batch's up to float rounding: length-groups.ts). false: the whole batch at its padded length.
   */
  lengthGroups?: boolean;
}

/** DpClippingEngine.start's lanes: where the clipping step runs. */
export interface ClippingLanesOptions {
  /** Lane processes; 1 runs the step in this process and starts none (the config's default). */
  count: number;
  /** Intra-op threads of each lane (default 1). */
  threadsPerLane?: number;
  /** How a lane rebuilds the engine's model: `PreparedModel.recipe` (models/build.ts `modelRecipe`). */
  recipe: ModelRecipe;
}

/**
 * Per-sample clipping with dp's engine on the model's DP layers. Builds a `DpModel` from
 * `def.layers` with `def`'s trainable flags and `initial` values. Throws dp's
 * UnsupportedLayerError (naming the layer) up front for a trainable layer it cannot clip exactly.
 */
export class DpClippingEngine implements ClippingEngine {
  private readonly model: DpModel;
  private readonly specs;
  private readonly names: string[];
  /** Set by `start` with more than one lane; owned by this engine (closed by `dispose`). */
  private lanes: DataParallelLanes | null = null;

  /**
   * An engine whose clipping step runs over `lanes.count` lane processes when that is more than 1
   * (otherwise the same as the constructor). The lanes build their model from `lanes.recipe` and
   * take every parameter value from this engine's; `setTrainable` keeps them in step. Throws what
   * the constructor throws, and dp's LaneError when a lane cannot start or its recipe builds a
   * different model.
   */
  static async start(
    def: ModelDef,
    initial: Record<string, Float32Array>,
    options: DpClippingEngineOptions & { lanes?: ClippingLanesOptions } = {},
  ): Promise<DpClippingEngine> {
    const { lanes, ...own } = options;
    const engine = new DpClippingEngine(def, initial, own);
    if (lanes && lanes.count > 1) {
      try {
        engine.lanes = await DataParallelLanes.start(engine.model, lanes.recipe, {
          lanes: lanes.count,
          threadsPerLane: lanes.threadsPerLane ?? 1,
        });
      } catch (err) {
        engine.dispose();
        throw err;
      }
    }
    return engine;
  }

  constructor(
    private readonly def: ModelDef,
    initial: Record<string, Float32Array>,
    private readonly options: DpClippingEngineOptions = {},
  ) {
    this.model = new DpModel(def.layers);
    try {
      const trainable = new Set(def.params.filter((p) => p.trainable).map((p) => p.name));
      this.model.setTrainable((n) => trainable.has(n), true);
      this.model.setTrainable((n) => !trainable.has(n), false);
      for (const p of def.params) this.set(p.name, initial[p.name]!, p.shape);
      assertSupported(this.model);
    } catch (err) {
      this.model.dispose();
      throw err;
    }
    this.specs = trainableSpecs(def);
    this.names = this.specs.map((s) => s.name);
    const order = this.model.trainableNames.join(',');
    if (order !== this.names.join(','))
      throw new Error(
        `internal: trainable order differs between the model (${order}) and its parameter list`,
      );
  }

  private set(name: string, value: Float32Array, shape: readonly number[]): void {
    const t = tf.tensor(value, [...shape]);
    try {
      this.model.setParam(name, t);
    } finally {
      t.dispose();
    }
  }

  setTrainable(flat: Float32Array): void {
    let o = 0;
    for (const s of this.specs) {
      const n = sizeOf(s.shape);
      this.set(s.name, flat.subarray(o, o + n), s.shape);
      o += n;
    }
    if (o !== flat.length)
      throw new RangeError(`trainable vector has ${flat.length} entries, the model ${o}`);
    // The values travel with the lanes' next step.
    this.lanes?.syncParams();
  }

  /** The PIDs of the lane processes the step runs in; empty when it runs in this process. */
  get lanePids(): number[] {
    return (this.lanes?.pids ?? []).filter((p) => p !== undefined);
  }

  /**
   * The batch's length groups (see lengthGroups in the options), or null to run it whole: not a
   * sequence model, grouping turned off, or one group at the padded length.
   */
  private groupsOf(x: Tensor): LengthGroup[] | null {
    const lengthsOf = this.def.sequenceLengths;
    if (!lengthsOf || this.options.lengthGroups === false || x.shape.length !== 2) return null;
    const [B, T] = x.shape as [number, number];
    if (B === 0) return null;
    const tokensPerGroup =
      this.options.maxChunkSize !== undefined
        ? this.options.maxChunkSize * T
        : (this.def.tokensPerChunk ?? (this.def.maxChunkSize ?? 256) * T);
    // The ids are public to this worker (its own shard); only the lengths are read.
    const groups = lengthGroups(lengthsOf(x.dataSync() as Int32Array, B), { tokensPerGroup });
    return groups.length === 1 && groups[0]!.length === T ? null : groups;
  }

  /** Runs f on each group's records [n, group length] and labels; disposes them after. */
  private async eachGroup(
    x: Tensor,
    labels: Tensor,
    groups: LengthGroup[],
    f: (xs: Tensor, ys: Tensor) => void | Promise<void>,
  ): Promise<void> {
    for (const g of groups) {
      const [xs, ys] = tf.tidy(() => groupRecords(x, labels, g));
      try {
        await f(xs, ys);
      } finally {
        tf.dispose([xs, ys]);
      }
    }
  }

  async clippedSum(x: Tensor, labels: Tensor, clipNorm: number): Promise<ClippedSum> {
    const groups = this.groupsOf(x);
    if (!groups) return this.clippedSumWhole(x, labels, clipNorm, undefined);
    // Σ over groups of each group's clipped sum: a sum over examples, regrouped.
    let total: ClippedSum | null = null;
    await this.eachGroup(x, labels, groups, async (xs, ys) => {
      const part = await this.clippedSumWhole(xs, ys, clipNorm, xs.shape[0]);
      if (!total) total = part;
      else {
        for (let i = 0; i < part.sum.length; i++) total.sum[i]! += part.sum[i]!;
        total.batchSize += part.batchSize;
        total.clipped += part.clipped;
      }
    });
    return total!;
  }

  private async clippedSumWhole(
    x: Tensor,
    labels: Tensor,
    clipNorm: number,
    chunk: number | undefined,
  ): Promise<ClippedSum> {
    const options: ClippingOptions = {
      clipNorm,
      maxChunkSize: chunk ?? this.options.maxChunkSize ?? this.def.maxChunkSize ?? 256,
      ...(this.options.clipMethod ? { clipMethod: this.options.clipMethod } : {}),
      ...(this.options.normMethod ? { normMethod: this.options.normMethod } : {}),
    };
    const step = this.lanes
      ? await this.lanes.dpSgdStep(x, labels, options)
      : dpSgdStep(this.model, x, labels, options);
    try {
      const flat = flattenSum(step.sum, this.names);
      try {
        const sum = flat.dataSync() as Float32Array;
        // The count stays on this worker (diagnostics); it is never sent anywhere.
        const clipped = step.clippedCount.dataSync()[0]!;
        return { sum: Float32Array.from(sum), batchSize: step.batchSize, clipped };
      } finally {
        flat.dispose();
      }
    } finally {
      step.dispose();
    }
  }

  /** Accuracy on a labelled set, in batches (the coordinator's evaluation). */
  accuracy(x: Tensor, labels: Tensor, batch = this.def.maxChunkSize ?? 1000): number {
    return this.evaluate(x, labels, batch).accuracy;
  }

  /**
   * Accuracy and mean cross-entropy (nats per example, of the softmax of the logits) on a
   * labelled set, in batches: the coordinator's held-out evaluation. Both 0 for an empty set.
   */
  evaluate(
    x: Tensor,
    labels: Tensor,
    batch = this.def.maxChunkSize ?? 1000,
  ): { accuracy: number; loss: number } {
    const n = x.shape[0]!;
    let correct = 0;
    let lossSum = 0;
    // Hits and the summed cross-entropy of one batch: the training objective's own loss (dp's),
    // so eval loss and training loss compare.
    const score = (xs: Tensor, ys: Tensor): void => {
      const [hits, loss] = tf.tidy(() => {
        const logits = this.model.forward(xs);
        const y = tf.cast(ys, 'int32');
        const hit = tf.equal(tf.argMax(logits, 1), y);
        return [tf.sum(tf.cast(hit, 'int32')).dataSync()[0]!, crossEntropySum(logits, y).dataSync()[0]!];
      });
      correct += hits;
      lossSum += loss;
    };
    const groups = this.groupsOf(x);
    // Length groups (as in clippedSum): each record's logits are the padded batch's.
    if (groups) for (const g of groups) tf.tidy(() => score(...groupRecords(x, labels, g)));
    else
      for (let s = 0; s < n; s += batch) {
        const k = Math.min(batch, n - s);
        tf.tidy(() => score(tf.slice(x, s, k), tf.slice(labels, s, k)));
      }
    return n === 0 ? { accuracy: 0, loss: 0 } : { accuracy: correct / n, loss: lossSum / n };
  }

  /** The model kind, for logs. */
  get kind(): string {
    return this.def.kind;
  }

  /** Frees the model and stops the lane processes, if any. */
  dispose(): void {
    this.lanes?.close();
    this.lanes = null;
    this.model.dispose();
  }
}

/** A length group's records cut to the group's longest, and their labels (inside a tidy). */
function groupRecords(x: Tensor, labels: Tensor, g: LengthGroup): [Tensor, Tensor] {
  const idx = tf.tensor1d(g.indices, 'int32');
  return [tf.slice(tf.gather(x, idx), [0, 0], [g.indices.length, g.length]), tf.gather(labels, idx)];
}
