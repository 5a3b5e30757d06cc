// A model here is a tree of @tensorguard/dp/tfjs DP layers plus the list of its named parameters.
// The layers are what the per-sample clipping engine understands (every trainable piece reports
// a site); the parameter list lets the coordinator own one flat Float32 vector of the trainable
// parameters (what is aggregated, optimised and checkpointed), while frozen parameters (a base
// model under LoRA) stay on the side and never leave a worker in an update.
import type * as tfTypes from '@tensorflow/tfjs-node';
import { walkLayers, type Layer, type ParamInit } from '@tensorguard/dp/tfjs';

export type Tf = typeof tfTypes;
export type Tensor = tfTypes.Tensor;

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Initialisation, as the DP layer declares it (Glorot-uniform layers give `{ uniform: limit }`). */
  init: ParamInit;
  trainable: boolean;
}

export interface ModelDef {
  kind: string;
  /** Shape of one record's features. */
  inputShape: number[];
  inputDtype: 'float32' | 'int32';
  numClasses: number;
  /** Every parameter of `layers`, in layer order, with this job's trainable flags. */
  params: ParamSpec[];
  /** The model as DP layers (what the clipping engine traces). */
  layers: Layer[];
  /**
   * Examples per clipping chunk and per evaluation batch this model asks for (default 256 and
   * 1000): a chunk's traced activations live together, so large models bound their memory here.
   */
  maxChunkSize?: number;
  /**
   * Sequence models only: each record's length (positions it uses) in features [batch, T], such that
   * cutting a batch to its longest record's length changes no record's logits or gradient. The
   * clipping engine then groups a batch by length into micro-batches (length-groups.ts).
   */
  sequenceLengths?(ids: ArrayLike<number>, batch: number): Int32Array;
  /** With sequenceLengths: tokens (records × length) per micro-batch, the memory bound maxChunkSize is for T. */
  tokensPerChunk?: number;
  /** Logits [batch, numClasses] from features [batch, ...inputShape], parameters from `p`. */
  forward(tf: Tf, p: Record<string, Tensor>, x: Tensor): Tensor;
}

/**
 * A ModelDef from DP layers. `trainable` decides which parameters train (default: what each
 * layer declares); `forward` runs the same layers with parameters read from a name → tensor map,
 * so the batch-of-one reference engine and the fast engine evaluate one definition.
 */
export function modelFromLayers(o: {
  kind: string;
  inputShape: number[];
  inputDtype: 'float32' | 'int32';
  numClasses: number;
  layers: Layer[];
  trainable?: (name: string, declared: boolean) => boolean;
}): ModelDef {
  const params: ParamSpec[] = [];
  for (const layer of walkLayers(o.layers)) {
    for (const p of layer.params) {
      params.push({
        name: p.name,
        shape: [...p.shape],
        init: p.init,
        trainable: o.trainable ? o.trainable(p.name, p.trainable) : p.trainable,
      });
    }
  }
  const layers = o.layers;
  return {
    kind: o.kind,
    inputShape: o.inputShape,
    inputDtype: o.inputDtype,
    numClasses: o.numClasses,
    params,
    layers,
    forward(_tf, p, x) {
      const ctx = {
        param: (n: string) => {
          const t = p[n];
          if (!t) throw new RangeError(`parameter '${n}' has no value`);
          return t;
        },
        site: (_l: Layer, _s: unknown, z: Tensor) => z,
      };
      return layers.reduce((h, l) => l.forward(h, ctx), x);
    },
  };
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function trainableSpecs(def: ModelDef): ParamSpec[] {
  return def.params.filter((p) => p.trainable);
}

export function trainableCount(def: ModelDef): number {
  return trainableSpecs(def).reduce((a, p) => a + sizeOf(p.shape), 0);
}

/** Splits a flat vector into named views following `specs` order. */
export function unflatten(specs: readonly ParamSpec[], flat: Float32Array): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  let o = 0;
  for (const s of specs) {
    const n = sizeOf(s.shape);
    out[s.name] = flat.subarray(o, o + n);
    o += n;
  }
  if (o !== flat.length) throw new RangeError(`flat vector has ${flat.length} entries, the parameters ${o}`);
  return out;
}

export function flatten(specs: readonly ParamSpec[], named: Record<string, ArrayLike<number>>): Float32Array {
  const total = specs.reduce((a, s) => a + sizeOf(s.shape), 0);
  const out = new Float32Array(total);
  let o = 0;
  for (const s of specs) {
    const v = named[s.name];
    if (!v || v.length !== sizeOf(s.shape))
      throw new RangeError(`parameter '${s.name}' is missing or has the wrong size`);
    out.set(v, o);
    o += v.length;
  }
  return out;
}

/**
 * Deterministic initial values from a seed (xorshift128+ → uniform; Box-Muller → normal), following
 * each parameter's declared init. This is model initialisation, not DP noise: it is public and need
 * not be cryptographic, but it must be identical in every process of a job.
 */
export function initParams(specs: readonly ParamSpec[], seed: number): Record<string, Float32Array> {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let s1 = (seed * 2654435761) >>> 0 || 2;
  const next = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    s1 = x >>> 0;
    return ((s0 + s1) >>> 0) / 4294967296;
  };
  const out: Record<string, Float32Array> = {};
  for (const p of specs) {
    const n = sizeOf(p.shape);
    const v = new Float32Array(n);
    const init = p.init;
    if (init === 'ones') v.fill(1);
    else if (init === 'zeros') {
      // already zero
    } else if ('uniform' in init) {
      for (let i = 0; i < n; i++) v[i] = (2 * next() - 1) * init.uniform;
    } else {
      for (let i = 0; i < n; i++) {
        const u = Math.max(next(), 1e-12);
        v[i] = init.normal * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
      }
    }
    out[p.name] = v;
  }
  return out;
}
