// The DP-SGD gradient phases for DpModel:
//   perSampleNorms     one forward pass, one backward pass w.r.t. the trainable sites' outputs
//                      only (the probe method: no weight gradients are formed),
//                      then each site's rule turns (input, output gradient) into ‖gᵢ‖² per example;
//   clipAndAccumulate  weights wᵢ = C / max(‖gᵢ‖, C), then Σᵢ wᵢ·gᵢ per parameter, by book-keeping
//                      (reusing the traced inputs and output gradients: one matmul per site) or by
//                      a second, reweighted backward pass;
//   dpSgdStep          both phases over chunks of at most maxChunkSize examples, summed.
// No noise is added here: the caller encodes and noises the clipped sum (secure aggregation),
// except in dpSgdStepCentral, the single-process convenience.
import tf, { type Scalar, type Tensor, scoped } from './tf.js';
import { ClippingEngineError, InvalidClippingOptionsError, UnsupportedLayerError } from './errors.js';
import { type ForwardContext, type Site, siteParams, walkLayers } from './layer.js';
import { crossEntropySum } from './loss.js';
import type { DpModel } from './model.js';
import { type NormMethod, type SiteGrad, clipWeights, siteGrad } from './sites.js';

/** Layer kinds with a per-sample gradient rule. Parameter-free layers of any kind are always accepted. */
export const SUPPORTED_LAYER_KINDS: readonly string[] = [
  'dense',
  'conv2d',
  'embedding',
  'layerNorm',
  'groupNorm',
  'loraDense',
];

/**
 * How the clipped sum is formed. `bookkeeping` (default) reuses the traced activations and output
 * gradients (Bu et al. 2022): one matmul per site, no second pass; `second-pass` differentiates
 * Σᵢ wᵢ·Lᵢ w.r.t. the parameters (Lee & Kifer 2021), a second forward and backward pass.
 */
export type ClipMethod = 'bookkeeping' | 'second-pass';

export interface NormOptions {
  /** Per-site norm computation for sequence/conv sites (default 'auto': the cheaper of ghost and instantiation). */
  normMethod?: NormMethod;
}

export interface ClippingOptions extends NormOptions {
  /** ℓ2 clip norm C, finite and > 0 (required). Each example's whole gradient is scaled to norm ≤ C. */
  clipNorm: number;
  /** Examples per chunk (default: the whole batch). Bounds memory: traced activations live for one chunk. */
  maxChunkSize?: number;
  /** Default 'bookkeeping' (measured faster: see README). */
  clipMethod?: ClipMethod;
}

interface CompiledOptions {
  clipNorm: number;
  maxChunkSize: number;
  clipMethod: ClipMethod;
  normMethod: NormMethod;
}

function compileOptions(o: ClippingOptions): CompiledOptions {
  if (!Number.isFinite(o.clipNorm) || o.clipNorm <= 0)
    throw new InvalidClippingOptionsError('clipNorm', `must be a finite number > 0, got ${o.clipNorm}`);
  const chunk = o.maxChunkSize ?? Infinity;
  if (chunk !== Infinity && (!Number.isInteger(chunk) || chunk < 1))
    throw new InvalidClippingOptionsError('maxChunkSize', `must be an integer ≥ 1, got ${chunk}`);
  const clipMethod = o.clipMethod ?? 'bookkeeping';
  if (clipMethod !== 'bookkeeping' && clipMethod !== 'second-pass')
    throw new InvalidClippingOptionsError(
      'clipMethod',
      `must be 'bookkeeping' or 'second-pass', got ${String(clipMethod)}`,
    );
  return {
    clipNorm: o.clipNorm,
    maxChunkSize: chunk,
    clipMethod,
    normMethod: compileNormMethod(o.normMethod),
  };
}

function compileNormMethod(m: NormMethod | undefined): NormMethod {
  const v = m ?? 'auto';
  if (v !== 'auto' && v !== 'ghost' && v !== 'instantiate')
    throw new InvalidClippingOptionsError(
      'normMethod',
      `must be 'auto', 'ghost' or 'instantiate', got ${String(v)}`,
    );
  return v;
}

function checkBatch(x: Tensor, labels: Tensor): number {
  const B = x.shape[0];
  if (B === undefined || B < 1)
    throw new InvalidClippingOptionsError('x', 'needs a leading batch axis with ≥ 1 example');
  if (labels.shape[0] !== B)
    throw new InvalidClippingOptionsError('labels', `has ${labels.shape[0]} examples but x has ${B}`);
  return B;
}

/**
 * Refuses, before any computation, a model with trainable parameters in a layer kind that has no
 * per-sample rule. Throws UnsupportedLayerError naming the first such layer.
 */
export function assertSupported(model: DpModel): void {
  for (const layer of walkLayers(model.layers)) {
    if (layer.params.some((p) => model.isTrainable(p.name)) && !SUPPORTED_LAYER_KINDS.includes(layer.kind))
      throw new UnsupportedLayerError(layer.name, layer.kind, SUPPORTED_LAYER_KINDS);
  }
}

// ---- tracing plan ---------------------------------------------------------------------------

interface Plan {
  siteShapes: number[][];
}

const plans = new WeakMap<DpModel, Map<string, Plan>>();

const liveParams = (model: DpModel, site: Site) => siteParams(site).filter((p) => model.isTrainable(p));

/**
 * Site output shapes for this input shape, from one untraced forward pass over at most two of
 * the examples (cached per model, input shape less the batch axis, and trainable set: Poisson
 * batches, their last chunks and length-grouped micro-batches vary in size, and a new size must
 * not cost another pass over the whole chunk; only the number of sites is reused). Also checks
 * that every trainable parameter is read by exactly one site: a trainable parameter outside every
 * site would get no gradient (the layer does not implement its rule), one in two sites would have
 * a wrong norm (weight tying is not supported).
 */
function planFor(model: DpModel, x: Tensor): Plan {
  const key = `${x.shape.slice(1).join('x')}|${model.trainableNames.join(',')}`;
  let byKey = plans.get(model);
  if (!byKey) plans.set(model, (byKey = new Map()));
  const cached = byKey.get(key);
  if (cached) return cached;
  const siteShapes: number[][] = [];
  const covered = new Map<string, string>();
  tf.tidy(() => {
    const probe = x.shape[0]! > 2 ? tf.slice(x, 0, 2) : x;
    model.forward(probe, {
      param: (n) => model.getParam(n),
      site(layer, site, z) {
        const live = liveParams(model, site);
        if (live.length === 0) return z;
        for (const p of live) {
          const other = covered.get(p);
          if (other !== undefined)
            throw new ClippingEngineError(
              `parameter "${p}" is read by two sites (layers "${other}" and "${layer.name}"); ` +
                'tied or shared trainable weights are not supported: untie them or freeze one use',
            );
          covered.set(p, layer.name);
        }
        if (z.shape[0] !== probe.shape[0])
          throw new ClippingEngineError(
            `layer "${layer.name}" reported a site whose output has no leading batch axis`,
          );
        siteShapes.push([...z.shape]);
        return z;
      },
    });
  });
  for (const p of model.trainableNames) {
    if (!covered.has(p)) {
      const owner = model.ownerOf(p);
      throw new UnsupportedLayerError(owner.name, owner.kind, SUPPORTED_LAYER_KINDS);
    }
  }
  const plan = { siteShapes };
  byKey.set(key, plan);
  return plan;
}

function keepSite(site: Site): [Site, Tensor] {
  const k = (t: Tensor) => tf.keep(tf.clone(t));
  switch (site.rule) {
    case 'linear':
    case 'conv2d':
    case 'lora': {
      const input = k(site.input);
      return [{ ...site, input }, input];
    }
    case 'embedding': {
      const indices = k(site.indices);
      return [{ ...site, indices }, indices];
    }
    case 'affine': {
      const normalized = k(site.normalized);
      return [{ ...site, normalized }, normalized];
    }
  }
}

// ---- phase 1: per-sample norms ---------------------------------------------------------------

/** The result of perSampleNorms: per-example norms plus what clipAndAccumulate reuses. Dispose it. */
export interface PerSampleNorms {
  /** ‖gᵢ‖₂ over all trainable parameters, shape [B]. Owned by this object. */
  readonly norms: Tensor;
  readonly batchSize: number;
  /** The per-site norm method actually used, in site order (diagnostics). */
  readonly siteMethods: readonly string[];
  dispose(): void;
}

class NormsState implements PerSampleNorms {
  constructor(
    readonly norms: Tensor,
    readonly batchSize: number,
    readonly model: DpModel,
    readonly x: Tensor,
    readonly labels: Tensor,
    readonly rules: SiteGrad[],
    private readonly held: Tensor[],
  ) {}

  get siteMethods(): string[] {
    return this.rules.map((r) => r.method);
  }

  dispose(): void {
    for (const r of this.rules) r.dispose();
    tf.dispose(this.held);
    this.norms.dispose();
    this.held.length = 0;
  }
}

/**
 * Per-example gradient norms of Σᵢ CE(f(xᵢ), yᵢ) w.r.t. the model's trainable parameters, without a
 * per-example loop: one forward pass, one backward pass w.r.t. the outputs of the trainable
 * sites, then a per-site rule (see sites.ts). x is the model input [B, ...], labels
 * int32 [B]. Processes the whole batch at once (dpSgdStep chunks). Throws UnsupportedLayerError
 * for a trainable layer without a rule, InvalidClippingOptionsError for mismatched batches.
 */
export function perSampleNorms(
  model: DpModel,
  x: Tensor,
  labels: Tensor,
  options: NormOptions = {},
): PerSampleNorms {
  const method = compileNormMethod(options.normMethod);
  assertSupported(model);
  const B = checkBatch(x, labels);
  const plan = planFor(model, x);
  const sites: Site[] = [];
  const held: Tensor[] = [];
  const rules: SiteGrad[] = [];
  try {
    const outputGrads = tf.tidy(() => {
      // The site outputs themselves are the tensors differentiated against: Engine.gradients
      // reads its `xs` only after running f (tfjs-core 4.x, pinned), so f puts the outputs it
      // meets there, replacing the placeholder. This is the probe method without the probes: no
      // zero tensors, no Add in the forward and no Reshape in the backward per site (measured
      // ~1 ms of the tanh CNN's step). As with probes, the backward pass covers only the nodes
      // downstream of a site: no weight gradients, and nothing before the first site.
      const outputs: Tensor[] = [];
      const owners: string[] = [];
      const xs: Tensor[] = [x];
      const { value, grads } = tf.engine().gradients(() => {
        const ctx: ForwardContext = {
          param: (n) => model.getParam(n),
          site(layer, site, z) {
            if (liveParams(model, site).length === 0) return z;
            const [kept, t] = keepSite(site);
            sites.push(kept);
            held.push(t);
            outputs.push(z);
            owners.push(layer.name);
            return z;
          },
        };
        const loss = crossEntropySum(model.forward(x, ctx), labels);
        if (outputs.length !== plan.siteShapes.length)
          throw new ClippingEngineError(
            `the traced forward pass reported ${outputs.length} sites, the planning pass ` +
              `${plan.siteShapes.length}: a layer's sites must not depend on the input's values`,
          );
        xs.splice(0, xs.length, ...outputs);
        return loss;
      }, xs);
      value.dispose();
      const dead = outputs.findIndex((_, k) => !grads[k]);
      if (dead >= 0)
        throw new ClippingEngineError(
          `layer "${owners[dead]}" reported a site whose output does not reach the loss: ` +
            'a layer must use the tensor ctx.site() returns in place of its output',
        );
      return grads;
    });
    held.push(...outputGrads.map((g) => tf.keep(g)));
    sites.forEach((site, k) =>
      rules.push(
        siteGrad(
          site,
          outputGrads[k]!,
          (p) => model.isTrainable(p),
          (p) => model.spec(p).shape,
          (p) => model.getParam(p),
          method,
        ),
      ),
    );
    const norms = tf.tidy(() => tf.keep(tf.sqrt(tf.relu(tf.addN(rules.map((r) => r.sqNorms))))));
    return new NormsState(norms, B, model, x, labels, rules, held);
  } catch (e) {
    for (const r of rules) r.dispose();
    tf.dispose(held);
    throw e;
  }
}

// ---- phase 2: clip and accumulate ------------------------------------------------------------

/** Σᵢ clip(gᵢ, C) by parameter, plus local diagnostics. Dispose it when done. */
export interface ClippedSum {
  /** One entry per trainable parameter, in model.trainableNames order, each of the parameter's shape. */
  readonly sum: Map<string, Tensor>;
  readonly batchSize: number;
  /** Examples with ‖gᵢ‖ > C (a scalar tensor, not synced; private: for local diagnostics only). */
  readonly clippedCount: Scalar;
  dispose(): void;
}

function clippedSumOf(sum: Map<string, Tensor>, batchSize: number, clippedCount: Scalar): ClippedSum {
  return {
    sum,
    batchSize,
    clippedCount,
    dispose: () => (tf.dispose([...sum.values()]), clippedCount.dispose()),
  };
}

/**
 * Clips each example's gradient to ℓ2 norm ≤ clipNorm and sums over the batch. Book-keeping reuses
 * the tensors held by `norms`; 'second-pass' runs a weighted backward pass instead. Does not
 * dispose `norms`.
 */
export function clipAndAccumulate(
  norms: PerSampleNorms,
  clipNorm: number,
  clipMethod: ClipMethod = 'bookkeeping',
): ClippedSum {
  if (!(norms instanceof NormsState))
    throw new InvalidClippingOptionsError('norms', 'must come from perSampleNorms()');
  const { clipNorm: C } = compileOptions({ clipNorm, clipMethod });
  const st = norms;
  return scoped(() => {
    const w = tf.div(C, tf.maximum(st.norms, C));
    let sum: Map<string, Tensor>;
    if (clipMethod === 'bookkeeping') {
      const parts = new Map<string, Tensor>();
      const cw = clipWeights(w);
      for (const r of st.rules)
        for (const [name, g] of r.weightedSum(cw)) {
          const prev = parts.get(name);
          parts.set(name, prev ? tf.add(prev, g) : g);
        }
      sum = new Map(st.model.trainableNames.map((n) => [n, tf.keep(parts.get(n)!)]));
    } else {
      sum = new Map([...paramGrads(st.model, st.x, st.labels, w)].map(([n, g]) => [n, tf.keep(g)]));
    }
    const clipped = tf.keep(tf.sum(tf.cast(tf.greater(st.norms, C), 'float32')) as Scalar);
    return clippedSumOf(sum, st.batchSize, clipped);
  });
}

/**
 * Gradient of Σᵢ wᵢ·CE(f(xᵢ), yᵢ) (w = 1 when absent) w.r.t. the trainable parameters: the
 * non-private step, the second-pass clipped sum, and the batch-of-one reference in tests.
 */
export function paramGrads(model: DpModel, x: Tensor, labels: Tensor, weights?: Tensor): Map<string, Tensor> {
  const names = model.trainableNames;
  const grads = tf.grads((..._ps: Tensor[]) => crossEntropySum(model.forward(x), labels, weights))(
    names.map((n) => model.getParam(n)),
  );
  return new Map(names.map((n, i) => [n, grads[i]!]));
}

// ---- the step --------------------------------------------------------------------------------

/**
 * One DP-SGD gradient step without noise: per-example gradients of the summed cross-entropy,
 * each clipped to ℓ2 norm ≤ clipNorm, summed, processed in chunks of at most maxChunkSize
 * examples. Returns the clipped sum for the caller to encode and noise. Throws
 * InvalidClippingOptionsError on bad options, UnsupportedLayerError before any work on a model
 * it cannot clip exactly.
 */
export function dpSgdStep(model: DpModel, x: Tensor, labels: Tensor, options: ClippingOptions): ClippedSum {
  const o = compileOptions(options);
  assertSupported(model);
  const B = checkBatch(x, labels);
  const chunk = Math.min(o.maxChunkSize, B);
  let acc: ClippedSum | null = null;
  for (let start = 0; start < B; start += chunk) {
    const n = Math.min(chunk, B - start);
    const whole = n === B;
    const xs = whole ? x : tf.slice(x, start, n);
    const ys = whole ? labels : tf.slice(labels, start, n);
    try {
      const st = perSampleNorms(model, xs, ys, o);
      let part: ClippedSum;
      try {
        part = clipAndAccumulate(st, o.clipNorm, o.clipMethod);
      } finally {
        st.dispose();
      }
      if (!acc) acc = part;
      else {
        const prev: ClippedSum = acc;
        acc = scoped(() =>
          clippedSumOf(
            new Map([...prev.sum].map(([k, v]) => [k, tf.keep(tf.add(v, part.sum.get(k)!))])),
            prev.batchSize + part.batchSize,
            tf.keep(tf.add(prev.clippedCount, part.clippedCount)),
          ),
        );
        prev.dispose();
        part.dispose();
      }
    } finally {
      if (!whole) tf.dispose([xs, ys]);
    }
  }
  return acc!;
}

/** The clipped sum as one flat [P] vector, parameters in `names` order (default: the map's order). */
export function flattenSum(
  sum: ReadonlyMap<string, Tensor>,
  names: readonly string[] = [...sum.keys()],
): Tensor {
  return tf.tidy(() => tf.concat(names.map((n) => tf.reshape(sum.get(n)!, [-1]))));
}

export interface CentralStepOptions extends ClippingOptions {
  /** σ: the noise standard deviation is σ·clipNorm (required, ≥ 0). */
  noiseMultiplier: number;
  /**
   * Returns n independent standard normal samples. The engine has no randomness of its own: pass
   * a sampler you trust (e.g. the CSPRNG-based one from @tensorguard/dp).
   */
  noise: (n: number) => Float32Array;
  /**
   * Divisor of the noisy sum (default: the realised batch size). Under Poisson sampling pass the
   * expected batch size q·N, since the realised size is private.
   */
  expectedBatchSize?: number;
}

/**
 * Single-process DP-SGD (Abadi et al. 2016): (Σᵢ clip(gᵢ) + N(0, σ²C²·I)) / expectedBatchSize,
 * by trainable parameter. The returned tensors belong to the caller.
 */
export function dpSgdStepCentral(
  model: DpModel,
  x: Tensor,
  labels: Tensor,
  options: CentralStepOptions,
): { gradient: Map<string, Tensor>; batchSize: number } {
  const sigma = options.noiseMultiplier;
  if (!Number.isFinite(sigma) || sigma < 0)
    throw new InvalidClippingOptionsError('noiseMultiplier', `must be a finite number ≥ 0, got ${sigma}`);
  const denom = options.expectedBatchSize;
  if (denom !== undefined && !(Number.isFinite(denom) && denom > 0))
    throw new InvalidClippingOptionsError('expectedBatchSize', `must be a finite number > 0, got ${denom}`);
  const step = dpSgdStep(model, x, labels, options);
  try {
    const names = [...step.sum.keys()];
    const total = names.reduce((a, n) => a + step.sum.get(n)!.size, 0);
    const xi = options.noise(total);
    if (xi.length !== total)
      throw new InvalidClippingOptionsError(
        'noise',
        `returned ${xi.length} samples, ${total} were asked for`,
      );
    const scale = 1 / (denom ?? step.batchSize);
    let o = 0;
    const gradient = new Map<string, Tensor>();
    tf.tidy(() => {
      for (const n of names) {
        const s = step.sum.get(n)!;
        const z = tf.tensor(xi.subarray(o, o + s.size), s.shape);
        o += s.size;
        gradient.set(n, tf.keep(tf.mul(tf.add(s, tf.mul(z, sigma * options.clipNorm)), scale)));
      }
    });
    return { gradient, batchSize: step.batchSize };
  } finally {
    step.dispose();
  }
}
