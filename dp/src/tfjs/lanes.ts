// Data-parallel lanes: one worker's batch split across K child processes on the same host, each
// with its own TensorFlow runtime and a one-thread intra-op pool, their clipped sums added.
//
// Why processes and not more intra-op threads: most kernels of a small model's step are below
// TensorFlow's cost threshold for splitting, so a second intra-op thread barely helps (the LoRA
// transformer's step is 69 ms on one thread and 62 ms on two, on 2 cores), while two independent
// halves of the batch run side by side. TensorFlow's CPU thread pool is process-wide (every
// eager context in a process shares it), so the lanes are processes: worker threads would share
// the parent's pool.
//
// Exactness: Σᵢ clip(gᵢ, C) is a sum over examples, so the lanes' partial sums add up to the
// one-process sum (up to float rounding in the order of additions). Each lane holds a full copy
// of the model; the caller keeps the lanes in step with `syncParams` after it updates the model.
// Nothing private leaves a lane except its partial clipped sum, which is what the caller would
// have computed itself.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ClippedSum, ClippingOptions } from './engine.js';
import type { DpModel } from './model.js';
import { type TanhCnnOptions, type TransformerOptions } from './models.js';
import tf, { type Tensor } from './tf.js';

/**
 * How a lane builds its copy of the model's layers: one of dp's reference models by name and its
 * options, or any module's export called with JSON-serializable arguments (an ES module URL or
 * absolute path; the export returns `Layer[]` or an object with a `layers: Layer[]` field).
 */
export type ModelRecipe =
  | { model: 'tanhCnn'; options?: TanhCnnOptions }
  | { model: 'transformerEncoder'; options: TransformerOptions }
  | { module: string; export: string; args?: unknown[] };

export interface LanesOptions {
  /** Number of lane processes (≥ 1). Typically the cores this worker may use. */
  lanes: number;
  /** Intra-op threads per lane (default 1). */
  threadsPerLane?: number;
}

/** A value that crosses the process boundary (structured clone keeps the typed array). */
export interface WireTensor {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

export type LaneRequest =
  | { op: 'init'; recipe: ModelRecipe; trainable: string[]; params: [string, WireTensor][] }
  | { op: 'set'; params: [string, WireTensor][] }
  | { op: 'dp'; x: WireTensor; y: WireTensor; options: ClippingOptions; params?: [string, WireTensor][] }
  | { op: 'grads'; x: WireTensor; y: WireTensor; params?: [string, WireTensor][] };

export type LaneReply =
  | { ok: true; sums?: [string, Float32Array][]; clipped?: number; names?: [string, number[]][] }
  | { ok: false; name: string; message: string };

/** A lane failed or its process died; `cause` carries the lane's own error name and message. */
export class LaneError extends Error {
  constructor(
    message: string,
    readonly laneError?: { name: string; message: string },
  ) {
    super(message);
    this.name = 'LaneError';
  }
}

export function toWire(t: Tensor): WireTensor {
  const dtype = t.dtype === 'int32' ? 'int32' : 'float32';
  const data = t.dataSync() as Float32Array | Int32Array;
  return { shape: [...t.shape], dtype, data };
}

interface Pending {
  resolve: (r: LaneReply & { ok: true }) => void;
  reject: (e: Error) => void;
}

class Lane {
  private queue: Pending[] = [];
  private dead: Error | null = null;

  constructor(
    readonly index: number,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (m: LaneReply) => {
      const p = this.queue.shift();
      if (!p) return;
      if (m.ok) p.resolve(m);
      else
        p.reject(
          new LaneError(`lane ${index}: ${m.name}: ${m.message}`, { name: m.name, message: m.message }),
        );
    });
    const fail = (why: string) => {
      this.dead ??= new LaneError(`lane ${index} ${why}`);
      for (const p of this.queue.splice(0)) p.reject(this.dead);
    };
    child.on('exit', (code, signal) =>
      fail(
        `exited (code ${code}, signal ${signal})` +
          (signal === 'SIGKILL'
            ? ': killed; if by the kernel for memory, note that each lane holds a copy of the model (fewer lanes use less)'
            : ''),
      ),
    );
    child.on('error', (e) => fail(`failed: ${e.message}`));
  }

  request(req: LaneRequest): Promise<LaneReply & { ok: true }> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.child.send(req, (e) => {
        if (e) {
          const i = this.queue.findIndex((p) => p.resolve === resolve);
          if (i >= 0) this.queue.splice(i, 1);
          reject(new LaneError(`lane ${this.index}: cannot send: ${e.message}`));
        }
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Contiguous slices [start, size) of a batch of B over k lanes, sizes differing by at most one. */
export function laneSlices(B: number, k: number): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  for (let i = 0; i < k; i++) {
    const n = Math.floor(B / k) + (i < B % k ? 1 : 0);
    if (n > 0) out.push([start, n]);
    start += n;
  }
  return out;
}

/**
 * K lane processes holding copies of one model. `dpSgdStep` and `paramGrads` split the batch,
 * run the halves side by side and return the summed result in this process's tfjs, as the
 * in-process functions of the same names do. Call `close()` when done.
 */
export class DataParallelLanes {
  private constructor(
    private readonly model: DpModel,
    private readonly lanes: Lane[],
  ) {}

  get size(): number {
    return this.lanes.length;
  }

  /** The lane processes' PIDs (for operators and tests). */
  get pids(): (number | undefined)[] {
    return this.lanes.map((l) => l.pid);
  }

  static async start(model: DpModel, recipe: ModelRecipe, options: LanesOptions): Promise<DataParallelLanes> {
    const k = options.lanes;
    if (!Number.isInteger(k) || k < 1 || k > 256)
      throw new RangeError(`lanes must be an integer from 1 to 256 (got ${k})`);
    const threads = options.threadsPerLane ?? 1;
    if (!Number.isInteger(threads) || threads < 1)
      throw new RangeError(`threadsPerLane must be a positive integer (got ${threads})`);
    const here = fileURLToPath(import.meta.url);
    const script = here.replace(/lanes\.(ts|js)$/, (_m, ext: string) => `lane-process.${ext}`);
    const env = {
      ...process.env,
      TF_NUM_INTRAOP_THREADS: String(threads),
      TF_NUM_INTEROP_THREADS: '1',
      TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2',
    };
    // The parent's loader flags (tsx, export conditions) carry over; an inspector port would clash.
    const execArgv = process.execArgv.filter((a) => !/^--(inspect|debug)/.test(a));
    const lanes = Array.from(
      { length: k },
      (_, i) =>
        new Lane(
          i,
          fork(script, [], {
            serialization: 'advanced',
            env,
            execArgv,
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          }),
        ),
    );
    const self = new DataParallelLanes(model, lanes);
    try {
      const params = model.paramNames.map((n): [string, WireTensor] => [n, toWire(model.getParam(n))]);
      const replies = await Promise.all(
        lanes.map((l) => l.request({ op: 'init', recipe, trainable: model.trainableNames, params })),
      );
      const mine = JSON.stringify(model.paramNames.map((n) => [n, [...model.spec(n).shape]]));
      for (const r of replies)
        if (JSON.stringify(r.names) !== mine)
          throw new LaneError(
            `the recipe ${JSON.stringify(recipe)} builds a model whose parameters differ from this model's: ` +
              'pass the recipe this model was built from',
          );
    } catch (e) {
      self.close();
      throw e;
    }
    return self;
  }

  private pending: [string, WireTensor][] | null = null;

  /**
   * Takes the model's current values of `names` (default: the trainable parameters) for every
   * lane. They travel with the next step's request (no round trip of their own); `flush` sends
   * them now.
   */
  syncParams(names: string[] = this.model.trainableNames): void {
    const next = new Map(this.pending ?? []);
    for (const n of names) next.set(n, toWire(this.model.getParam(n)));
    this.pending = [...next];
  }

  /** Sends parameter values taken by `syncParams` that no request has carried yet. */
  async flush(): Promise<void> {
    const params = this.pending;
    this.pending = null;
    if (params) await Promise.all(this.lanes.map((l) => l.request({ op: 'set', params })));
  }

  private async split(
    x: Tensor,
    labels: Tensor,
    make: (x: WireTensor, y: WireTensor, params?: [string, WireTensor][]) => LaneRequest,
  ): Promise<{ sums: Map<string, Float32Array>; clipped: number; batch: number }> {
    const B = x.shape[0] ?? 0;
    if (labels.shape[0] !== B)
      throw new RangeError(
        `labels hold ${labels.shape[0]} examples, x holds ${B}: pass one label per example`,
      );
    const slices = laneSlices(B, this.lanes.length);
    const parts = slices.map(([start, n]): [WireTensor, WireTensor] => {
      const xs = tf.slice(x, start, n);
      const ys = tf.slice(labels, start, n);
      try {
        return [toWire(xs), toWire(ys)];
      } finally {
        tf.dispose([xs, ys]);
      }
    });
    const params = this.pending ?? undefined;
    this.pending = null;
    // Lanes without examples this time still take the parameters.
    if (params && slices.length < this.lanes.length)
      await Promise.all(this.lanes.slice(slices.length).map((l) => l.request({ op: 'set', params })));
    const replies = await Promise.all(
      parts.map(([xs, ys], i) => this.lanes[i]!.request(make(xs, ys, params))),
    );
    const sums = new Map<string, Float32Array>();
    let clipped = 0;
    for (const r of replies) {
      clipped += r.clipped ?? 0;
      for (const [name, v] of r.sums ?? []) {
        const acc = sums.get(name);
        if (!acc) sums.set(name, v);
        else for (let i = 0; i < v.length; i++) acc[i]! += v[i]!;
      }
    }
    return { sums, clipped, batch: B };
  }

  private toTensors(sums: Map<string, Float32Array>): Map<string, Tensor> {
    return new Map(
      this.model.trainableNames.map((n) => [n, tf.tensor(sums.get(n)!, [...this.model.spec(n).shape])]),
    );
  }

  /** `dpSgdStep` over the lanes: Σᵢ clip(gᵢ, C) for the whole batch. Dispose the result. */
  async dpSgdStep(x: Tensor, labels: Tensor, options: ClippingOptions): Promise<ClippedSum> {
    const { sums, clipped, batch } = await this.split(x, labels, (xs, ys, params) => ({
      op: 'dp',
      x: xs,
      y: ys,
      options,
      params,
    }));
    const sum = this.toTensors(sums);
    const clippedCount = tf.scalar(clipped);
    return {
      sum,
      batchSize: batch,
      clippedCount,
      dispose: () => (tf.dispose([...sum.values()]), clippedCount.dispose()),
    };
  }

  /** `paramGrads` over the lanes (the non-private gradient of the summed loss). */
  async paramGrads(x: Tensor, labels: Tensor): Promise<Map<string, Tensor>> {
    const { sums } = await this.split(x, labels, (xs, ys, params) => ({ op: 'grads', x: xs, y: ys, params }));
    return this.toTensors(sums);
  }

  /** Stops the lane processes. */
  close(): void {
    for (const l of this.lanes) l.kill();
  }
}
