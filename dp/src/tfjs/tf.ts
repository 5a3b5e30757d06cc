// The one place that loads TensorFlow.js, so that the native binding can be switched without
// touching the engine: the `gpu` variant loads @tensorflow/tfjs-node-gpu (CUDA), `cpu`
// @tensorflow/tfjs-node. Both packages expose the same API, so the CPU package's types describe
// either. The variant is TENSORGUARD_TFJS_VARIANT when it says cpu or gpu, else the one the setup
// step built (it writes <repo>/.cache/setup/tfjs-variant; with `auto` it picks gpu on a host where
// nvidia-smi lists a device), else cpu. It is read once, when this module is first imported;
// TensorFlow's thread pools (TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS) are likewise fixed
// by the first import in the process.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as TfjsNode from '@tensorflow/tfjs-node';

type Tfjs = typeof TfjsNode;

/** The variant the setup step built, from its record in the repository (src/ and dist/ alike). */
function builtVariant(): string | undefined {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  try {
    return fs.readFileSync(path.join(root, '.cache', 'setup', 'tfjs-variant'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function resolveVariant(): 'cpu' | 'gpu' {
  const asked = (process.env.TENSORGUARD_TFJS_VARIANT ?? '').toLowerCase();
  if (asked === 'cpu' || asked === 'gpu') return asked;
  return builtVariant() === 'gpu' ? 'gpu' : 'cpu';
}

/** Which native binding is loaded: see the comment at the top. */
export const tfjsVariant: 'cpu' | 'gpu' = resolveVariant();

const require = createRequire(import.meta.url);

const tf: Tfjs = require(
  tfjsVariant === 'gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node',
) as Tfjs;

export default tf;
export type Tensor = TfjsNode.Tensor;
export type Tensor4D = TfjsNode.Tensor4D;
export type Tensor1D = TfjsNode.Tensor1D;
export type Scalar = TfjsNode.Scalar;

/**
 * Runs f in a tf.tidy scope that disposes every tensor f creates except those it tf.keep()s, and
 * returns f's result as is (tf.tidy itself only returns tensor containers).
 */
export function scoped<T>(f: () => T): T {
  let out: { v: T } | undefined;
  tf.tidy(() => {
    out = { v: f() };
  });
  return out!.v;
}

/** The part of tfjs-node's backend that runs a TensorFlow op by name (how its own kernels run). */
interface NativeBackend {
  executeSingleOutput(name: string, attrs: unknown[], inputs: Tensor[]): Tensor;
  executeMultipleOutputs(name: string, attrs: unknown[], inputs: Tensor[], numOutputs: number): Tensor[];
  isUsingGpuDevice?: boolean;
  binding: {
    TF_ATTR_TYPE: number;
    TF_ATTR_BOOL: number;
    TF_ATTR_INT: number;
    TF_ATTR_STRING: number;
    TF_ATTR_FLOAT: number;
    TF_FLOAT: number;
    TF_INT32: number;
  };
}

/** tfjs-node's backend, or null on a backend without TensorFlow kernels (tfjs' pure-JS `cpu`). */
function nativeBackend(): NativeBackend | null {
  const backend = tf.backend() as unknown as Partial<NativeBackend>;
  return typeof backend.executeSingleOutput === 'function' && backend.binding
    ? (backend as NativeBackend)
    : null;
}

/**
 * dy·y·(1 − y), the gradient of y = σ(x), in one pass: TensorFlow's `SigmoidGrad` kernel, run on
 * tfjs-node's backend (tfjs has no op for it; its own sigmoid gradient is three). On a backend
 * without TensorFlow kernels (tfjs' pure-JS `cpu`) the same expression is composed from tfjs ops.
 * No gradient of its own: for use inside a tf.customGrad gradient. float32 only.
 */
export function sigmoidGrad(y: Tensor, dy: Tensor): Tensor {
  const backend = nativeBackend();
  if (!backend) return tf.mul(dy, tf.mul(y, tf.sub(1, y)));
  const T = { name: 'T', type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT };
  return backend.executeSingleOutput('SigmoidGrad', [T], [y, dy]);
}

/**
 * Σ t² over `axes` (the other axes kept, in order): the squared per-example norms the rules
 * reduce their per-example gradients to. On tfjs-node, TensorFlow's `EuclideanNorm` reduction
 * squared: one pass over t instead of Square's written copy and Sum's second pass (measured
 * 0.19 → 0.12 ms on a [256, 64, 24] per-example gradient, 2 threads); the square and root differ
 * from Σ t² by float rounding only (~1e-7 relative). Elsewhere tf.sum(tf.square(t)). float32 only.
 */
export function squaredNorms(t: Tensor, axes: number[]): Tensor {
  const backend = nativeBackend();
  if (!backend || t.dtype !== 'float32') return tf.sum(tf.square(t), axes);
  const { TF_ATTR_TYPE, TF_ATTR_BOOL, TF_FLOAT, TF_INT32 } = backend.binding;
  const axis = tf.tensor1d(axes, 'int32');
  try {
    const norm = backend.executeSingleOutput(
      'EuclideanNorm',
      [
        { name: 'keep_dims', type: TF_ATTR_BOOL, value: false },
        { name: 'T', type: TF_ATTR_TYPE, value: TF_FLOAT },
        { name: 'Tidx', type: TF_ATTR_TYPE, value: TF_INT32 },
      ],
      [t, axis],
    );
    try {
      return tf.square(norm);
    } finally {
      norm.dispose();
    }
  } finally {
    axis.dispose();
  }
}

type SaveFn = (tensors: Tensor[]) => void;
type CustomGradFn = Parameters<typeof tf.customGrad>[0];

/**
 * 2-D max pooling of x [B, H, W, C] with a fast gradient on TensorFlow's CPU kernels: the forward
 * pass is `MaxPoolWithArgmax` (int32 flat indices, batch included), the backward pass one
 * `UnsortedSegmentSum` of dy into those indices. TensorFlow's own `MaxPoolGrad` recomputes every
 * window's argmax and, with overlapping windows and few channels, is slow: on the tanh CNN's first
 * pool (2×2, stride 1, [256, 14, 14, 16], 2 threads) forward + backward take ~1.5 ms this way
 * against ~7 ms (MaxPool 0.5 + MaxPoolGrad 6–7). Both kernels pick a window's first maximum in
 * row-major order (TensorFlow's shared argmax helper), so the gradient is the same, ties included.
 * Elsewhere — tfjs' pure-JS `cpu` backend, a CUDA device (TensorFlow's GPU argmax kernel is int64
 * only, which tfjs would copy to JavaScript), or inputs with 2³¹ or more elements — it is
 * tf.maxPool with its own gradient.
 */
export function maxPool2d(
  x: Tensor4D,
  poolSize: [number, number],
  strides: [number, number],
  padding: 'same' | 'valid',
): Tensor4D {
  const backend = nativeBackend();
  if (!backend || backend.isUsingGpuDevice || x.dtype !== 'float32' || x.size >= 2 ** 31)
    return tf.maxPool(x, poolSize, strides, padding);
  return argmaxPool(backend, poolSize, strides, padding)(x) as Tensor4D;
}

function argmaxPool(
  backend: NativeBackend,
  [ph, pw]: [number, number],
  [sh, sw]: [number, number],
  padding: 'same' | 'valid',
): (x: Tensor) => Tensor {
  const { TF_ATTR_TYPE, TF_ATTR_BOOL, TF_ATTR_INT, TF_ATTR_STRING, TF_FLOAT, TF_INT32 } = backend.binding;
  const attrs = [
    { name: 'ksize', type: TF_ATTR_INT, value: [1, ph, pw, 1] },
    { name: 'strides', type: TF_ATTR_INT, value: [1, sh, sw, 1] },
    { name: 'padding', type: TF_ATTR_STRING, value: padding === 'same' ? 'SAME' : 'VALID' },
    { name: 'include_batch_in_index', type: TF_ATTR_BOOL, value: true },
    { name: 'Targmax', type: TF_ATTR_TYPE, value: TF_INT32 },
    { name: 'T', type: TF_ATTR_TYPE, value: TF_FLOAT },
  ];
  return tf.customGrad(((x: Tensor, save: SaveFn) => {
    const [y, argmax] = backend.executeMultipleOutputs('MaxPoolWithArgmax', attrs, [x], 2) as [
      Tensor,
      Tensor,
    ];
    save([argmax]);
    return {
      value: y,
      gradFunc: (dy: Tensor, [idx]: Tensor[]) =>
        tf.reshape(tf.unsortedSegmentSum(tf.reshape(dy, [-1]), tf.reshape(idx!, [-1]), x.size), x.shape),
    };
  }) as unknown as CustomGradFn) as (x: Tensor) => Tensor;
}

/**
 * tanh with its gradient as one TensorFlow `TanhGrad` kernel, dy·(1 − y²), where tfjs' own
 * gradient is three ops (Square, Sub, Multiply) on the activation's full size; ~0.3 ms of the
 * tanh CNN's step per direction at batch 256. Same function and gradient, rounding aside. On a
 * backend without TensorFlow kernels, tf.tanh.
 */
export function tanh(x: Tensor): Tensor {
  const backend = nativeBackend();
  if (!backend || x.dtype !== 'float32') return tf.tanh(x);
  return tanhWithGrad(backend)(x);
}

const tanhFns = new WeakMap<NativeBackend, (x: Tensor) => Tensor>();

function tanhWithGrad(backend: NativeBackend): (x: Tensor) => Tensor {
  let f = tanhFns.get(backend);
  if (!f) {
    const T = { name: 'T', type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT };
    f = tf.customGrad(((x: Tensor, save: SaveFn) => {
      const y = tf.tanh(x);
      save([y]);
      return {
        value: y,
        gradFunc: (dy: Tensor, [ys]: Tensor[]) => backend.executeSingleOutput('TanhGrad', [T], [ys!, dy]),
      };
    }) as unknown as CustomGradFn) as (x: Tensor) => Tensor;
    tanhFns.set(backend, f);
  }
  return f;
}

/**
 * Σᵢ wᵢ·CE(softmax(logitsᵢ), labelsᵢ) (w = 1 when absent) for logits [B, K] and integer labels
 * [B], with its gradient, by one TensorFlow `SparseSoftmaxCrossEntropyWithLogits` kernel: it
 * returns the per-example losses and ∂Lᵢ/∂logitsᵢ = softmax − onehot together, so the backward
 * pass is one multiply. tfjs' composition (one-hot, log-softmax, product, sums and their
 * gradients) is ~35 ops. Returns null on a backend without TensorFlow kernels (the caller composes
 * tfjs ops). Labels and weights are constants here (no gradient flows to them). A label outside
 * [0, K) throws a RangeError that, unlike TensorFlow's own message, does not list the labels.
 */
export function softmaxCrossEntropySum(logits: Tensor, labels: Tensor, weights?: Tensor): Tensor | null {
  const backend = nativeBackend();
  if (!backend || logits.dtype !== 'float32' || logits.rank !== 2) return null;
  const { TF_ATTR_TYPE, TF_FLOAT, TF_INT32 } = backend.binding;
  const attrs = [
    { name: 'T', type: TF_ATTR_TYPE, value: TF_FLOAT },
    { name: 'Tlabels', type: TF_ATTR_TYPE, value: TF_INT32 },
  ];
  const B = logits.shape[0]!;
  const K = logits.shape[1]!;
  const f = tf.customGrad(((z: Tensor, save: SaveFn) => {
    const ints = labels.dtype === 'int32' ? labels : tf.cast(labels, 'int32');
    let out: Tensor[];
    try {
      out = backend.executeMultipleOutputs('SparseSoftmaxCrossEntropyWithLogits', attrs, [z, ints], 2);
    } catch (e) {
      if (/outside the valid range/.test(String((e as Error).message)))
        throw new RangeError(
          `labels must be integers in [0, ${K}) for ${K} logits per example; at least one of the ${B} is not ` +
            '(values not shown: labels are private data)',
        );
      throw e;
    } finally {
      if (ints !== labels) ints.dispose();
    }
    const [loss, backprop] = out as [Tensor, Tensor];
    save([backprop]);
    return {
      value: tf.sum(weights ? tf.mul(loss, weights) : loss),
      gradFunc: (dy: Tensor, [g]: Tensor[]) =>
        tf.mul(g!, weights ? tf.mul(tf.reshape(weights, [B, 1]), dy) : dy),
    };
  }) as unknown as CustomGradFn) as (x: Tensor) => Tensor;
  return f(logits);
}

// ---- dp's own TensorFlow kernels -----------------------------------------------------------

/**
 * dp's CPU kernels (dp/native/tg_kernels.cc), compiled by the setup into dp/build and registered
 * with TensorFlow's C kernel API into the libtensorflow tfjs-node loaded, so that tfjs-node runs
 * them by name. Loaded on first use, on tfjs-node's CPU device only. `TENSORGUARD_DP_KERNELS=0`
 * (or setDpKernels(false)) turns them off; every rule that uses them has a TensorFlow-ops path.
 */
const kernels: { loaded: boolean | null; enabled: boolean; error?: string } = {
  loaded: null,
  enabled: process.env.TENSORGUARD_DP_KERNELS !== '0',
};

function kernelsLoaded(): boolean {
  if (kernels.loaded !== null) return kernels.loaded;
  kernels.loaded = false;
  const backend = nativeBackend();
  if (!backend) return ((kernels.error = 'the backend has no TensorFlow kernels'), false);
  if (backend.isUsingGpuDevice)
    return ((kernels.error = 'CPU kernels only (a CUDA device is in use)'), false);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const file = path.join(root, 'dp', 'build', 'tg_kernels.node');
  if (!fs.existsSync(file))
    return ((kernels.error = `${file} is not built (npm run setup builds it)`), false);
  try {
    const mod = require(file) as { ops?: string[] };
    const want = [
      'TgConvPerExample',
      'TgWeightedRowSum',
      'TgGelu',
      'TgGeluGrad',
      'TgLayerNorm',
      'TgLayerNormGrad',
    ];
    kernels.loaded = Array.isArray(mod.ops) && want.every((op) => mod.ops!.includes(op));
    if (!kernels.loaded)
      kernels.error = `${file} registers ${String(mod.ops)}, not ${want.join(', ')}: run the setup`;
  } catch (e) {
    kernels.error = `${file} does not load: ${(e as Error).message}`;
  }
  return kernels.loaded;
}

/** Whether dp's own kernels are in use, and why not when they are not. */
export function dpKernels(): { active: boolean; enabled: boolean; loaded: boolean; error?: string } {
  const loaded = kernelsLoaded();
  return { active: loaded && kernels.enabled, enabled: kernels.enabled, loaded, error: kernels.error };
}

/** Turns dp's own kernels on or off for this process (A/B measurements and tests). */
export function setDpKernels(enabled: boolean): void {
  kernels.enabled = enabled;
}

/** dp's kernels are active and every input is float32 (what they take). */
const active = (...ts: Tensor[]) =>
  kernels.enabled && kernelsLoaded() && ts.every((t) => t.dtype === 'float32');

/** Per-example conv kernel gradients' squared norms (and the gradients, and bias sums). */
export interface ConvPerExample {
  /** [B, kh·kw·Cin, Cout] in a [kh, kw, Cin, Cout] kernel's order, when asked for. */
  grads: Tensor | null;
  /** Σ over the kernel's entries of gᵢ², [B]. */
  sqNorms: Tensor;
  /** Σ over output positions of dy, [B, Cout]: each example's bias gradient. */
  biasSums: Tensor;
}

/**
 * `TgConvPerExample`: for x [B, H, W, Cin] and the conv output's gradient dy [B, Ho, Wo, Cout],
 * each example's kernel gradient formed in registers straight from x and dy (no patches, no
 * transposes), its squared norm and its bias gradient; the gradients themselves only when
 * `emitGrads`. Null when dp's kernels are not active. No gradient of its own.
 */
export function convPerExample(
  x: Tensor,
  dy: Tensor,
  [kh, kw]: readonly [number, number],
  [sh, sw]: readonly [number, number],
  padding: 'same' | 'valid',
  emitGrads: boolean,
): ConvPerExample | null {
  if (!active(x, dy)) return null;
  const backend = nativeBackend()!;
  const { TF_ATTR_INT, TF_ATTR_BOOL } = backend.binding;
  const pad = (inSize: number, outSize: number, k: number, s: number) =>
    padding === 'same' ? Math.floor(Math.max((outSize - 1) * s + k - inSize, 0) / 2) : 0;
  const ints: [string, number][] = [
    ['kh', kh],
    ['kw', kw],
    ['sh', sh],
    ['sw', sw],
    ['pad_top', pad(x.shape[1]!, dy.shape[1]!, kh, sh)],
    ['pad_left', pad(x.shape[2]!, dy.shape[2]!, kw, sw)],
  ];
  const attrs = [
    ...ints.map(([name, value]) => ({ name, type: TF_ATTR_INT, value })),
    { name: 'emit_grads', type: TF_ATTR_BOOL, value: emitGrads },
  ];
  const [grads, sqNorms, biasSums] = backend.executeMultipleOutputs(
    'TgConvPerExample',
    attrs,
    [x, dy],
    3,
  ) as [Tensor, Tensor, Tensor];
  if (!emitGrads) grads.dispose();
  return { grads: emitGrads ? grads : null, sqNorms, biasSums };
}

/**
 * `TgWeightedRowSum`: Σ_b w[b]·g[b, :] for g [B, N] and w [B], one pass over g (a [1, B]·[B, N]
 * matmul is a slow path of TensorFlow's: ~0.6 ms against ~0.25 ms for N = 8192, B = 256). Null
 * when dp's kernels are not active.
 */
export function weightedRowSum(g: Tensor, w: Tensor): Tensor | null {
  if (!active(g, w)) return null;
  return nativeBackend()!.executeSingleOutput('TgWeightedRowSum', [], [g, w]);
}

let geluFn: ((x: Tensor) => Tensor) | null = null;

/**
 * GELU (tanh approximation, layers.ts's formula) by `TgGelu`, its gradient by `TgGeluGrad`: one
 * pass each over the feed-forward's widest tensor, against 6 and 6 TensorFlow ops, and only x is
 * kept for the backward pass (σ is recomputed) instead of x, x² and σ. Null when dp's kernels are
 * not active.
 */
export function geluKernel(x: Tensor): Tensor | null {
  if (!active(x)) return null;
  if (!geluFn) {
    const backend = nativeBackend()!;
    geluFn = tf.customGrad(((v: Tensor, save: SaveFn) => {
      save([v]);
      return {
        value: backend.executeSingleOutput('TgGelu', [], [v]),
        gradFunc: (dy: Tensor, [xs]: Tensor[]) => backend.executeSingleOutput('TgGeluGrad', [], [xs!, dy]),
      };
    }) as unknown as CustomGradFn) as (x: Tensor) => Tensor;
  }
  return geluFn(x);
}

const layerNormFns = new Map<number, (x: Tensor) => Tensor>();

/**
 * x̂ = (x − mean)·(var + ε)^−½ over the last axis by `TgLayerNorm`, with the gradient
 * dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂∘x̂)) by `TgLayerNormGrad`: one pass each instead of 7
 * TensorFlow ops each way. Null when dp's kernels are not active.
 */
export function layerNormKernel(x: Tensor, epsilon: number): Tensor | null {
  if (!active(x)) return null;
  let f = layerNormFns.get(epsilon);
  if (!f) {
    const backend = nativeBackend()!;
    const attrs = [{ name: 'epsilon', type: backend.binding.TF_ATTR_FLOAT, value: epsilon }];
    f = tf.customGrad(((v: Tensor, save: SaveFn) => {
      const [xhat, rstd] = backend.executeMultipleOutputs('TgLayerNorm', attrs, [v], 2) as [Tensor, Tensor];
      save([xhat, rstd]);
      return {
        value: xhat,
        gradFunc: (dy: Tensor, [h, r]: Tensor[]) =>
          backend.executeSingleOutput('TgLayerNormGrad', [], [dy, h!, r!]),
      };
    }) as unknown as CustomGradFn) as (x: Tensor) => Tensor;
    layerNormFns.set(epsilon, f);
  }
  return f(x);
}
