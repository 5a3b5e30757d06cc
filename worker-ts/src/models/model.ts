// A model here is a list of named parameters and a pure forward function over them. Keeping the
// parameters outside tf.layers lets the coordinator own one flat Float32 vector of the trainable
// parameters (what is aggregated, optimised and checkpointed), while frozen parameters (a base
// model under LoRA) stay on the side and never leave a worker in an update.
import type * as tfTypes from '@tensorflow/tfjs-node';

export type Tf = typeof tfTypes;
export type Tensor = tfTypes.Tensor;

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Initialisation: Glorot-uniform, zeros, ones, or N(0, 0.02²) (embeddings). */
  init: 'glorot' | 'zeros' | 'ones' | 'normal';
  trainable: boolean;
}

export interface ModelDef {
  kind: string;
  /** Shape of one record's features. */
  inputShape: number[];
  inputDtype: 'float32' | 'int32';
  numClasses: number;
  params: ParamSpec[];
  /** Logits [batch, numClasses] from features [batch, ...inputShape]. */
  forward(tf: Tf, p: Record<string, Tensor>, x: Tensor): Tensor;
  /** Layer types used, for the per-sample clipping engine's support check. */
  layers: string[];
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
 * Deterministic initial values from a seed (xorshift128+ → uniform; Box-Muller → normal). This is
 * model initialisation, not DP noise: it is public and need not be cryptographic.
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
    if (p.init === 'ones') v.fill(1);
    else if (p.init === 'glorot') {
      const fanIn = p.shape.length > 1 ? sizeOf(p.shape.slice(0, -1)) : p.shape[0]!;
      const fanOut = p.shape[p.shape.length - 1]!;
      const recept = p.shape.length === 4 ? p.shape[0]! * p.shape[1]! : 1;
      const fi = p.shape.length === 4 ? recept * p.shape[2]! : fanIn;
      const fo = p.shape.length === 4 ? recept * fanOut : fanOut;
      const limit = Math.sqrt(6 / (fi + fo));
      for (let i = 0; i < n; i++) v[i] = (2 * next() - 1) * limit;
    } else if (p.init === 'normal') {
      for (let i = 0; i < n; i++) {
        const u = Math.max(next(), 1e-12);
        v[i] = 0.02 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
      }
    }
    out[p.name] = v;
  }
  return out;
}
