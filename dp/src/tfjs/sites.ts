// Per-sample gradient rules, one per site kind. Each rule gets a site's recorded input and the
// per-example gradient of the loss w.r.t. the site's pre-activation output z (the engine's one
// backward pass), and returns (1) each example's squared gradient norm over the site's trainable
// parameters and (2) a function that forms Σᵢ wᵢ·gᵢ for per-example weights w — the book-keeping
// clipped sum (Bu et al. 2022): the weight gradient is one matmul (a conv: one filter-gradient
// op) of the reweighted activations and output gradients, so per-example gradients are never
// formed unless instantiation was the cheaper way to get the norms (dense sites then reuse them).
import tf, {
  type Tensor,
  type Tensor1D,
  type Tensor4D,
  convPerExample,
  squaredNorms,
  weightedRowSum,
} from './tf.js';
import { ClippingEngineError } from './errors.js';
import type { LoraBlock, Site } from './layer.js';

/** How a linear site computes norms: `ghost` (Gram matrices), `instantiate` (per-example weight gradients), or the cheaper one. */
export type NormMethod = 'auto' | 'ghost' | 'instantiate';

export interface SiteGrad {
  /** Σ over the site's trainable parameters of ‖gᵢ‖², shape [B]. */
  readonly sqNorms: Tensor;
  /** How the weight norm was computed (for diagnostics and tests). */
  readonly method: 'outer' | 'ghost' | 'instantiate' | 'none';
  /** Σᵢ wᵢ·gᵢ per trainable parameter, for weights w [B]. Tensors are new (caller owns them). */
  weightedSum(w: ClipWeights): [string, Tensor][];
  /** Frees what the rule held between the norm and the clip phases. */
  dispose(): void;
}

/**
 * Per-site choice for a linear map applied at T positions: mixed ghost clipping (Bu et al. 2023)
 * with Li et al. 2022's criterion. Per example, the ghost norm ⟨aaᵀ, zzᵀ⟩ needs T×T Gram
 * matrices; instantiating gᵢ = aᵢᵀzᵢ needs a Din×Dout gradient; ghost is chosen when its Gram
 * matrices are the smaller, 2T² < Din·Dout. On FLOPs alone instantiation would always win under
 * book-keeping (ghost adds one B·T·Din·Dout matmul for the clipped sum); measured on the tanh
 * CNN's second conv (T = 25, Din·Dout = 8192, 2 threads) ghost plus that matmul is still ~1.5×
 * faster, because the per-example gradient tensor's memory traffic (written, squared, summed,
 * reweighted) and the small batched matmuls cost more than one large, efficient matmul.
 */
export function chooseLinearMethod(
  T: number,
  din: number,
  dout: number,
  requested: NormMethod,
): 'ghost' | 'instantiate' {
  if (requested !== 'auto') return requested;
  return 2 * T * T < din * dout ? 'ghost' : 'instantiate';
}

const sumSq = squaredNorms;

/**
 * t with the given shape, without a Reshape op when it already has it. Each tfjs-node op costs
 * ~50–80 µs of fixed overhead (a Reshape also uploads its shape tensor); on the tanh CNN the rules'
 * ~100 small ops were a third of the DP step's overhead. The result may be t itself: use it as
 * an op input only, never keep or dispose it.
 */
function view(t: Tensor, shape: number[]): Tensor {
  return t.rank === shape.length && t.shape.every((d, i) => d === shape[i]) ? t : tf.reshape(t, shape);
}

/** Σ of the non-null parts, or zeros when there are none (a rule with nothing trainable). */
const sumParts = (B: number, parts: Tensor[]): Tensor =>
  parts.length === 0 ? tf.zeros([B]) : parts.length === 1 ? parts[0]! : tf.addN(parts);

/** The clipping weights wᵢ [B] in the layouts the rules broadcast them in, made once per clip. */
export interface ClipWeights {
  readonly w: Tensor;
  /** [1, B]: Σᵢ wᵢ·rowᵢ as one matmul. */
  readonly row: Tensor;
  /** [B, 1]: rows of a [B, n] view scaled by wᵢ. */
  readonly col: Tensor;
  /** [B, 1, 1]: a [B, T, n] tensor scaled per example. */
  readonly col3: Tensor;
}

export function clipWeights(w: Tensor): ClipWeights {
  const B = w.shape[0]!;
  return { w, row: tf.reshape(w, [1, B]), col: tf.reshape(w, [B, 1]), col3: tf.reshape(w, [B, 1, 1]) };
}

/** Linear rule for a [B, T, Din] input and [B, T, Dout] output gradient (T = 1 for 2-D input). */
function linearRule(
  a: Tensor,
  din: number,
  z: Tensor,
  weight: string | null,
  bias: string | null,
  method: NormMethod,
): SiteGrad {
  const B = z.shape[0]!;
  const dout = z.shape[z.rank - 1]!;
  const T = z.size / (B * dout);
  const held: Tensor[] = [];
  let chosen: SiteGrad['method'] = 'none';
  let instantiated: Tensor | null = null;
  let biasSums: Tensor | null = null;
  const sqNorms = tf.tidy(() => {
    const parts: Tensor[] = [];
    if (T === 1) {
      // ‖aᵢ zᵢᵀ‖²_F = ‖aᵢ‖²·‖zᵢ‖² (Goodfellow 2015); the bias gradient is zᵢ itself.
      const zz = sumSq(view(z, [B, dout]), [1]);
      if (weight) {
        chosen = 'outer';
        parts.push(tf.mul(sumSq(view(a, [B, din]), [1]), zz));
      }
      if (bias) parts.push(zz);
    } else {
      const z3 = view(z, [B, T, dout]);
      if (weight) {
        const a3 = view(a, [B, T, din]);
        if (chooseLinearMethod(T, din, dout, method) === 'ghost') {
          chosen = 'ghost';
          parts.push(tf.sum(tf.mul(tf.matMul(a3, a3, false, true), tf.matMul(z3, z3, false, true)), [1, 2]));
        } else {
          chosen = 'instantiate';
          const g = tf.keep(tf.matMul(a3, z3, true, false));
          held.push(g);
          instantiated = g;
          parts.push(sumSq(g, [1, 2]));
        }
      }
      if (bias) {
        const bs = tf.keep(tf.sum(z3, 1));
        held.push(bs);
        biasSums = bs;
        parts.push(sumSq(bs, [1]));
      }
    }
    return tf.keep(sumParts(B, parts));
  });
  held.push(sqNorms);
  return {
    sqNorms,
    method: chosen,
    weightedSum(cw) {
      return tf.tidy(() => {
        const out: [string, Tensor][] = [];
        // Per-example reweighting of a [B·T, n] view of t (T = 1: one broadcast mul, no reshapes).
        const reweight = (t: Tensor, n: number) =>
          T === 1 ? tf.mul(view(t, [B, n]), cw.col) : view(tf.mul(view(t, [B, T, n]), cw.col3), [B * T, n]);
        let zw: Tensor | null = null;
        if (weight) {
          let g: Tensor;
          if (instantiated) {
            g = view(tf.matMul(cw.row, view(instantiated, [B, din * dout])), [din, dout]);
          } else if (din <= dout) {
            // Reweight whichever side is narrower, then one [Din, B·T]·[B·T, Dout] matmul.
            g = tf.matMul(reweight(a, din), view(z, [B * T, dout]), true, false);
          } else {
            zw = reweight(z, dout);
            g = tf.matMul(view(a, [B * T, din]), zw, true, false);
          }
          out.push([weight, g]);
        }
        if (bias) {
          const b =
            T === 1
              ? zw
                ? tf.sum(zw, 0)
                : view(tf.matMul(cw.row, view(z, [B, dout])), [dout])
              : view(tf.matMul(cw.row, biasSums!), [dout]);
          out.push([bias, b]);
        }
        return out.map(([n, t]) => [n, tf.keep(t)] as [string, Tensor]);
      });
    },
    dispose: () => tf.dispose(held),
  };
}

/**
 * im2col for NHWC input: [B, Ho·Wo, kh·kw·C] patches whose last axis is ordered (kh, kw, C),
 * the flattening order of a [kh, kw, Cin, Cout] kernel, so a conv is patches · kernel[K, Cout].
 * Computed by a convolution with a constant one-hot kernel, which runs on the backend's fast conv
 * path; measured on the tanh CNN (2 threads, batch 256) this is 2–10× faster than TensorFlow's
 * ExtractImagePatches or kh·kw strided slices. With one input channel a plain conv with the
 * K×K identity (cost B·Ho·Wo·K²) is fastest; with more, a depthwise conv with a one-hot
 * [kh, kw, C, kh·kw] kernel (cost B·Ho·Wo·K·kh·kw, Cin times less) whose output is ordered
 * (C, kh, kw) and is transposed here.
 */
export function im2col(
  x: Tensor,
  kernelSize: readonly [number, number],
  strides: readonly [number, number],
  padding: 'same' | 'valid',
): Tensor {
  return tf.tidy(() => {
    const { patches, order } = im2colUnordered(x, kernelSize, strides, padding);
    if (order === 'khkwc') return patches;
    const [B, P] = [x.shape[0]!, patches.shape[1]!];
    const [kh, kw] = kernelSize;
    const C = x.shape[3]!;
    return tf.reshape(tf.transpose(tf.reshape(patches, [B, P, C, kh * kw]), [0, 1, 3, 2]), [
      B,
      P,
      kh * kw * C,
    ]);
  });
}

/**
 * Patches in whichever feature order the fastest method produces: 'khkwc' (kernel layout) or
 * 'ckhkw' (channel-major, from the depthwise method). The conv rule avoids the transpose by
 * permuting only the small [K, Cout] weight sum instead.
 */
function im2colUnordered(
  x: Tensor,
  [kh, kw]: readonly [number, number],
  strides: readonly [number, number],
  padding: 'same' | 'valid',
): { patches: Tensor; order: 'khkwc' | 'ckhkw' } {
  return scopedPatches(() => {
    const [B, C] = [x.shape[0]!, x.shape[3]!];
    const K = kh * kw * C;
    const x4 = x as Tensor4D;
    // [kh, kw, C, kh·kw] with a 1 at (i, j, c, i·kw + j): with C = 1 the K×K identity for a plain
    // conv, else the depthwise one-hot kernel. Built in JS: one upload instead of four ops.
    const taps = kh * kw;
    const hot = new Float32Array(taps * C * taps);
    for (let t = 0; t < taps; t++) for (let c = 0; c < C; c++) hot[(t * C + c) * taps + t] = 1;
    const oneHot = tf.tensor4d(hot, [kh, kw, C, taps]);
    if (C === 1)
      return {
        patches: tf.reshape(tf.conv2d(x4, oneHot, [strides[0], strides[1]], padding), [B, -1, K]),
        order: 'khkwc',
      };
    return {
      patches: tf.reshape(tf.depthwiseConv2d(x4, oneHot, [strides[0], strides[1]], padding), [B, -1, K]),
      order: 'ckhkw',
    };
  });
}

function scopedPatches<T extends { patches: Tensor }>(f: () => T): T {
  let out: T | undefined;
  const kept = tf.tidy(() => {
    out = f();
    return out.patches;
  });
  return { ...out!, patches: kept };
}

/** im2col from kh·kw strided slices of the (padded) input: portable, slower. */
export function im2colBySlices(
  x: Tensor,
  [kh, kw]: readonly [number, number],
  [sh, sw]: readonly [number, number],
  padding: 'same' | 'valid',
): Tensor {
  return tf.tidy(() => {
    const [B, H, W, C] = x.shape as [number, number, number, number];
    let xp = x;
    let ho: number;
    let wo: number;
    if (padding === 'same') {
      ho = Math.ceil(H / sh);
      wo = Math.ceil(W / sw);
      const ph = Math.max((ho - 1) * sh + kh - H, 0);
      const pw = Math.max((wo - 1) * sw + kw - W, 0);
      const top = Math.floor(ph / 2);
      const left = Math.floor(pw / 2);
      if (ph > 0 || pw > 0)
        xp = tf.pad(x, [
          [0, 0],
          [top, ph - top],
          [left, pw - left],
          [0, 0],
        ]);
    } else {
      ho = Math.floor((H - kh) / sh) + 1;
      wo = Math.floor((W - kw) / sw) + 1;
    }
    const slices: Tensor[] = [];
    for (let i = 0; i < kh; i++)
      for (let j = 0; j < kw; j++)
        slices.push(
          tf.stridedSlice(
            xp,
            [0, i, j, 0],
            [B, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, C],
            [1, sh, sw, 1],
          ),
        );
    return tf.reshape(tf.stack(slices, 3), [B, ho * wo, kh * kw * C]);
  });
}

/**
 * Builds the rule for one traced site. `z` is the per-example output gradient (the site output's
 * gradient); `trainable` says which of the site's parameters count.
 */
export function siteGrad(
  site: Site,
  z: Tensor,
  trainable: (param: string) => boolean,
  shapeOf: (param: string) => readonly number[],
  valueOf: (param: string) => Tensor,
  method: NormMethod,
): SiteGrad {
  const live = (p: string | null) => (p !== null && trainable(p) ? p : null);
  switch (site.rule) {
    case 'linear':
      return linearRule(
        site.input,
        site.input.shape[site.input.rank - 1]!,
        z,
        live(site.weight),
        live(site.bias),
        method,
      );
    case 'conv2d':
      return convRule(site, z, live(site.weight), live(site.bias), method);
    case 'embedding':
      return embeddingRule(site.indices, z, site.weight, shapeOf(site.weight)[0]!, method);
    case 'affine':
      return affineRule(site.normalized, z, live(site.gain), live(site.bias));
    case 'lora':
      return loraRule(site.input, z, site.blocks, live, valueOf, method);
  }
}

/** Σ of several rules' norms, their weighted sums in turn, and one dispose. */
function combine(rules: SiteGrad[], held: Tensor[], B: number): SiteGrad {
  const sqNorms = tf.tidy(() =>
    tf.keep(
      sumParts(
        B,
        rules.map((r) => r.sqNorms),
      ),
    ),
  );
  return {
    sqNorms,
    method: rules[0]?.method ?? 'none',
    weightedSum: (cw) => rules.flatMap((r) => r.weightedSum(cw)),
    dispose: () => {
      for (const r of rules) r.dispose();
      tf.dispose(held);
      if (!rules.some((r) => r.sqNorms === sqNorms)) sqNorms.dispose();
    },
  };
}

/** A rule whose weighted sum for `name` is split into column blocks [rows, width] named by `pieces`. */
function splitWeight(rule: SiteGrad, name: string, pieces: readonly [string, number][]): SiteGrad {
  return {
    ...rule,
    weightedSum(cw) {
      return rule.weightedSum(cw).flatMap(([n, g]): [string, Tensor][] => {
        if (n !== name) return [[n, g]];
        if (pieces.length === 1) return [[pieces[0]![0], g]];
        const parts = tf.split(
          g,
          pieces.map(([, w]) => w),
          1,
        );
        g.dispose();
        return pieces.map(([p], i) => [p, parts[i]!]);
      });
    },
  };
}

/** Placeholder weight name under which the LoRA rule runs linearRule on its merged A's. */
const ADAPTERS_A = '\0lora.a';

/**
 * A `lora` site: z = x·W + b whose K column blocks are outputScaleₖ·(x·(W₀ₖ + scaleₖ·AₖBₖ) + b₀ₖ),
 * with z's per-example gradient dz. With cₖ = outputScaleₖ·scaleₖ, Aₖ's gradient is xᵀ·u'ₖ with
 * u'ₖ = cₖ·dzₖ·Bₖᵀ (the gradient of x·Aₖ), and Bₖ's is ũₖᵀ·dzₖ with ũₖ = cₖ·x·Aₖ: the two linear
 * sites of an unmerged adapter, whose inputs and output gradients the rule forms itself.
 *
 * - One block (loraDense): u' = dz·(cB)ᵀ and ũ = x·(cA), one matmul each, then the linear rule
 *   on (x, u') for A and on (ũ, dz) for B.
 * - K blocks of equal width and rank (attention's fused q/k/v): dz is transposed once to
 *   [K, B·T, units], so that each block's columns are contiguous; u' for all blocks is one
 *   batched matmul, transposed back to [B, T, K·r] for one linear rule whose weight is
 *   [A₁ | … | A_K]; ũ is one matmul x·[c₁A₁ | … | c_K A_K] transposed to [K, B·T, r], and B's rule
 *   is the linear rule batched over blocks (blockedLinearRule).
 * - Trainable bases (frozen in LoRA fine-tuning, but they can be unfrozen): the linear rule on
 *   each block's columns of outputScaleₖ·dz.
 *
 * Frozen A's or B's are left out.
 */
function loraRule(
  x: Tensor,
  z: Tensor,
  blocks: readonly LoraBlock[],
  live: (p: string | null) => string | null,
  valueOf: (p: string) => Tensor,
  method: NormMethod,
): SiteGrad {
  const din = x.shape[x.rank - 1]!;
  const B = z.shape[0]!;
  const dout = z.shape[z.rank - 1]!;
  const T = z.size / (B * dout);
  const K = blocks.length;
  const units = blocks[0]!.units;
  const r = valueOf(blocks[0]!.a).shape[1]!;
  if (K > 1 && blocks.some((k) => k.units !== units || valueOf(k.a).shape[1] !== r))
    throw new ClippingEngineError('a lora site with several blocks needs blocks of equal width and rank');
  const c = (k: LoraBlock) => k.outputScale * k.scale;
  const rules: SiteGrad[] = [];
  const held: Tensor[] = [];
  const hold = (t: Tensor) => (held.push(t), t);
  try {
    blocks.forEach((k, i) => {
      const [w, b] = [live(k.weight), live(k.bias)];
      if (!w && !b) return;
      const zk = tf.tidy(() => {
        const cols =
          K === 1
            ? z
            : tf.slice(
                z,
                [...z.shape.slice(0, -1).map(() => 0), i * units],
                [...z.shape.slice(0, -1), units],
              );
        return tf.keep(k.outputScale === 1 ? tf.clone(cols) : tf.mul(cols, k.outputScale));
      });
      rules.push(linearRule(x, din, hold(zk), w, b, method));
    });
    const withA = blocks.map((k, i) => [k, i] as const).filter(([k]) => live(k.a));
    const withB = blocks.map((k, i) => [k, i] as const).filter(([k]) => live(k.b));
    // [K, B·T, units]: block k's columns of dz, contiguous (K > 1 only).
    const dzT =
      K > 1 && (withA.length > 0 || withB.length > 0)
        ? hold(tf.tidy(() => tf.keep(tf.transpose(tf.reshape(z, [B * T, K, units]), [1, 0, 2]))))
        : null;
    const pick = (t: Tensor, which: readonly (readonly [LoraBlock, number])[]) =>
      which.length === K
        ? t
        : tf.gather(
            t,
            which.map(([, i]) => i),
          );
    if (withA.length > 0) {
      const uGrad = tf.tidy(() => {
        if (!dzT)
          return tf.keep(
            view(
              tf.matMul(view(z, [B * T, dout]), tf.mul(valueOf(blocks[0]!.b), c(blocks[0]!)), false, true),
              [B, T, r],
            ),
          );
        const bs = tf.stack(withA.map(([k]) => tf.mul(valueOf(k.b), c(k)))); // [K_A, r, units]
        const u = tf.matMul(pick(dzT, withA), bs, false, true); // [K_A, B·T, r]
        return tf.keep(tf.reshape(tf.transpose(u, [1, 0, 2]), [B, T, withA.length * r]));
      });
      const rule = linearRule(x, din, hold(uGrad), ADAPTERS_A, null, method);
      rules.push(
        splitWeight(
          rule,
          ADAPTERS_A,
          withA.map(([k]) => [k.a, r]),
        ),
      );
    }
    if (withB.length > 0) {
      const u = tf.tidy(() => {
        const as = withB.map(([k]) => tf.mul(valueOf(k.a), c(k)));
        const ux = tf.matMul(view(x, [B * T, din]), as.length === 1 ? as[0]! : tf.concat(as, 1));
        if (!dzT) return tf.keep(view(ux, [B, T, r]));
        return tf.keep(tf.transpose(tf.reshape(ux, [B * T, withB.length, r]), [1, 0, 2])); // [K_B, B·T, r]
      });
      hold(u);
      if (!dzT) rules.push(linearRule(u, r, z, blocks[0]!.b, null, method));
      else {
        const dzB = hold(tf.tidy(() => tf.keep(pick(dzT, withB))));
        rules.push(
          blockedLinearRule(
            u,
            dzB,
            B,
            T,
            withB.map(([k]) => k.b),
            method,
          ),
        );
      }
    }
    return combine(rules, held, B);
  } catch (e) {
    for (const rule of rules) rule.dispose();
    tf.dispose(held);
    throw e;
  }
}

/**
 * The linear rule (weight only) for K linear maps at once, each with its own input and output
 * gradient: a [K, B·T, Din] and z [K, B·T, Dout] (example-major within a block). Norms are summed
 * over the blocks; ghost or instantiated per chooseLinearMethod, as in linearRule.
 */
function blockedLinearRule(
  a: Tensor,
  z: Tensor,
  B: number,
  T: number,
  names: readonly string[],
  method: NormMethod,
): SiteGrad {
  const [K, din, dout] = [a.shape[0]!, a.shape[2]!, z.shape[2]!];
  const ghost = T > 1 && chooseLinearMethod(T, din, dout, method) === 'ghost';
  let perExample: Tensor | null = null;
  const sqNorms = tf.tidy(() => {
    const a3 = view(a, [K * B, T, din]);
    const z3 = view(z, [K * B, T, dout]);
    let perBlock: Tensor; // [K·B]
    if (ghost)
      perBlock = tf.sum(tf.mul(tf.matMul(a3, a3, false, true), tf.matMul(z3, z3, false, true)), [1, 2]);
    else {
      perExample = tf.keep(tf.matMul(a3, z3, true, false)); // [K·B, Din, Dout]
      perBlock = sumSq(perExample, [1, 2]);
    }
    return tf.keep(K === 1 ? view(perBlock, [B]) : tf.sum(tf.reshape(perBlock, [K, B]), 0));
  });
  return {
    sqNorms,
    method: ghost ? 'ghost' : 'instantiate',
    weightedSum(cw) {
      return tf.tidy(() => {
        // [K, Din, Dout]: Σᵢ wᵢ·gᵢ per block.
        const g = perExample
          ? tf.matMul(tf.reshape(cw.w, [1, 1, B]), tf.reshape(perExample, [K, B, din * dout]))
          : tf.matMul(
              tf.reshape(tf.mul(tf.reshape(a, [K, B, T * din]), tf.reshape(cw.w, [1, B, 1])), [
                K,
                B * T,
                din,
              ]),
              z,
              true,
              false,
            );
        const parts = K === 1 ? [g] : tf.split(g, K, 0);
        return names.map((n, k) => [n, tf.keep(tf.reshape(parts[k]!, [din, dout]))] as [string, Tensor]);
      });
    },
    dispose: () => (sqNorms.dispose(), (perExample as Tensor | null)?.dispose()),
  };
}

type ConvSite = Extract<Site, { rule: 'conv2d' }>;

/**
 * Conv rule. Norms: the linear rules on im2col patches (T = Ho·Wo positions, Din = kh·kw·Cin),
 * ghost or instantiated by chooseLinearMethod, or, when Cin·Cout ≤ kh·kw (a first layer on
 * grayscale images), per-example kernel gradients from one depthwise filter-gradient op with no
 * patches at all. Whatever the norms needed is freed as soon as they are formed: the clipped sum
 * Σᵢ wᵢgᵢ = ∂/∂W Σᵢ wᵢ⟨zᵢ, conv(xᵢ, W)⟩ is ONE batched filter gradient (Conv2DBackpropFilter) of
 * the input and the reweighted output gradients z·w, the op the non-private backward pass runs.
 * Measured on the tanh CNN (batch 256, 2 threads) it costs about half the [Din, B·T]·[B·T, Cout]
 * matmul over patches (conv2) or the [1, B]·[B, Din·Cout] reduction of per-example gradients
 * (conv1), and nothing the size of the patches lives between the two phases.
 */
function convRule(
  site: ConvSite,
  z: Tensor,
  weight: string | null,
  bias: string | null,
  method: NormMethod,
): SiteGrad {
  const x = site.input;
  const [kh, kw] = site.kernelSize;
  const [B, cin, cout] = [x.shape[0]!, x.shape[3]!, z.shape[3]!];
  const T = z.size / (B * cout);
  const din = kh * kw * cin;
  let chosen: SiteGrad['method'] = 'none';
  let biasSums: Tensor | null = null;
  let perExample: Tensor | null = null;
  // 'tap-major': [kh·kw, B, Cin·Cout] from the depthwise filter gradient; 'example-major':
  // [B, kh·kw·Cin·Cout] from dp's own kernel.
  let layout: 'tap-major' | 'example-major' = 'tap-major';
  const sqNorms = tf.tidy(() => {
    const z3 = tf.reshape(z, [B, T, cout]);
    const parts: Tensor[] = [];
    // dp's own kernel (tf.ts, dp/native): each example's gradient formed in registers from x and
    // z, for its norm and its bias sums; the gradients are kept for the clipped sum when they are
    // no more than 4× the activations book-keeping holds anyway (then Σᵢ wᵢgᵢ is one weighted row
    // sum instead of a filter gradient over all positions). Per example it costs T·Din·Cout
    // multiply-adds, and the clipped sum another T·Din·Cout when the gradients are not kept; the
    // ghost norm costs T²·(Din + Cout) plus that filter gradient. So 'auto' takes the kernel when
    // it keeps the gradients or when Din·Cout ≤ T·(Din + Cout) (always for the tanh CNN), and
    // ghost otherwise (a late layer of a deep CNN: few positions, many channels).
    const keep = din * cout <= 4 * (x.size / B + T * cout);
    const native =
      weight &&
      T > 1 &&
      (method === 'instantiate' || (method === 'auto' && (keep || din * cout <= T * (din + cout))))
        ? convPerExample(x, z, site.kernelSize, site.strides, site.padding, keep)
        : null;
    if (native) {
      chosen = 'instantiate';
      parts.push(native.sqNorms);
      if (native.grads) {
        perExample = tf.keep(tf.reshape(native.grads, [B, din * cout]));
        layout = 'example-major';
      }
      if (bias) {
        biasSums = tf.keep(native.biasSums);
        parts.push(sumSq(biasSums, [1]));
      }
      return tf.keep(sumParts(B, parts));
    }
    if (weight) {
      const patches = () => im2colUnordered(x, site.kernelSize, site.strides, site.padding).patches;
      if (T === 1) {
        chosen = 'outer';
        // ‖aᵢ zᵢᵀ‖²_F = ‖aᵢ‖²·‖zᵢ‖² (Goodfellow 2015); the patch order does not matter.
        parts.push(tf.mul(sumSq(patches(), [1, 2]), sumSq(z3, [1, 2])));
      } else if (chooseLinearMethod(T, din, cout, method) === 'ghost') {
        chosen = 'ghost';
        const a3 = patches();
        parts.push(tf.sum(tf.mul(tf.matMul(a3, a3, false, true), tf.matMul(z3, z3, false, true)), [1, 2]));
      } else {
        chosen = 'instantiate';
        if (cin * cout <= kh * kw) {
          // [kh·kw, B, Cin·Cout]: the inner axis reduced first (one EuclideanNorm pass), then the
          // outer: 0.11 ms against 0.17 ms for Square + two Sums and 0.31 ms for both axes at once.
          // Kept: in this layout Σᵢ wᵢgᵢ is one broadcast [1, B]·[B, Cin·Cout] matmul per tap,
          // ~0.1 ms against ~0.8 ms for the filter gradient (tanh CNN conv1, 1 MB held).
          perExample = tf.keep(perExampleConvGrads(x, z, site.kernelSize, site.strides, site.padding));
          parts.push(tf.sum(sumSq(perExample, [2]), 0));
        } else parts.push(sumSq(tf.matMul(patches(), z3, true, false), [1, 2]));
      }
    }
    if (bias) {
      biasSums = tf.keep(tf.sum(z3, 1));
      parts.push(sumSq(biasSums, [1]));
    }
    return tf.keep(sumParts(B, parts));
  });
  return {
    sqNorms,
    method: chosen,
    weightedSum(cw) {
      return tf.tidy(() => {
        const out: [string, Tensor][] = [];
        if (weight && perExample && layout === 'example-major') {
          const sum = weightedRowSum(perExample, cw.w) ?? tf.matMul(cw.row, perExample);
          out.push([weight, tf.reshape(sum, [kh, kw, cin, cout])]);
        } else if (weight && perExample) {
          const g = tf.matMul(tf.reshape(cw.w, [1, 1, B]), perExample); // [kh·kw, 1, Cin·Cout]
          out.push([weight, tf.reshape(g, [kh, kw, cin, cout])]);
        } else if (weight) {
          // The filter gradient is bilinear in (x, z): reweight the smaller of the two. Done on a
          // [B, n] view, as TensorFlow's row broadcast over a 4-D tensor is several times slower.
          const reweight = (t: Tensor) => tf.reshape(tf.mul(tf.reshape(t, [B, -1]), cw.col), t.shape);
          const [xw, zw] = x.size <= z.size ? [reweight(x), z] : [x, reweight(z)];
          out.push([weight, convFilterGrad(xw, zw, site)]);
        }
        if (bias && biasSums) out.push([bias, tf.reshape(tf.matMul(cw.row, biasSums), [cout])]);
        return out.map(([n, t]) => [n, tf.keep(t)] as [string, Tensor]);
      });
    },
    dispose: () => (sqNorms.dispose(), biasSums?.dispose(), perExample?.dispose()),
  };
}

/** ∂/∂W Σ⟨dy, conv2d(x, W)⟩ summed over the batch: [kh, kw, Cin, Cout]. */
function convFilterGrad(x: Tensor, dy: Tensor, site: ConvSite): Tensor {
  const [kh, kw] = site.kernelSize;
  return tf.engine().runKernel(
    tf.Conv2DBackpropFilter,
    { x, dy },
    {
      strides: [site.strides[0], site.strides[1]],
      pad: site.padding,
      dataFormat: 'NHWC',
      filterShape: [kh, kw, x.shape[3]!, dy.shape[3]!],
    },
  ) as Tensor;
}

/**
 * Per-example conv kernel gradients by one depthwise filter-gradient op, laid out
 * [kh·kw, B, Cin·Cout] (tap-major, as the op produces them; only their norms are needed, so
 * they are not transposed to [B, kh·kw·Cin, Cout]): the batch moves into the channel axis
 * ([1, H, W, B·Cin]) and example b's output gradient, repeated for each of its Cin channels, is
 * the "depthwise" output gradient with channel multiplier Cout. Cost equals the im2col matmul,
 * without the kh·kw-times-larger patch tensor. Used only when Cin·Cout ≤ kh·kw, as for a first
 * layer on grayscale images: TensorFlow's CPU kernel slows down sharply with many channels
 * (measured 5–10× slower than im2col for the tanh CNN's second conv, B·Cin = 4096 channels).
 */
export function perExampleConvGrads(
  x: Tensor,
  z: Tensor,
  [kh, kw]: readonly [number, number],
  strides: readonly [number, number],
  padding: 'same' | 'valid',
): Tensor {
  return tf.tidy(() => {
    const [B, H, W, C] = x.shape as [number, number, number, number];
    const [, ho, wo, cout] = z.shape as [number, number, number, number];
    const xin = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, H, W, B * C]);
    let dy = tf.transpose(z, [1, 2, 0, 3]); // [Ho, Wo, B, Cout]
    if (C > 1) dy = tf.tile(tf.reshape(dy, [ho, wo, B, 1, cout]), [1, 1, 1, C, 1]);
    dy = tf.reshape(dy, [1, ho, wo, B * C * cout]);
    const g = tf.engine().runKernel(
      tf.DepthwiseConv2dNativeBackpropFilter,
      { x: xin, dy },
      {
        strides: [strides[0], strides[1]],
        dilations: [1, 1],
        pad: padding,
        filterShape: [kh, kw, B * C, cout],
      },
    ) as Tensor;
    return tf.reshape(g, [kh * kw, B, C * cout]);
  });
}

/**
 * Embedding rows: example i's gradient is Σₜ onehot(idxᵢₜ)·zᵢₜᵀ, nonzero only in the rows it
 * looked up. Instantiate (the default): scatter each example's output gradients into one segment
 * per distinct row (segment = first position of that row in the example), O(B·T²) comparisons and
 * O(B·T·D) memory. Ghost: ‖gᵢ‖² = Σₜₛ [idxᵢₜ = idxᵢₛ]·⟨zᵢₜ, zᵢₛ⟩, O(B·T²·D). The clipped sum
 * scatters the reweighted output gradients into one [V, D] table.
 */
function embeddingRule(indices: Tensor, z: Tensor, weight: string, V: number, method: NormMethod): SiteGrad {
  const B = indices.shape[0]!;
  const D = z.shape[z.rank - 1]!;
  const T = indices.size / B;
  let chosen: SiteGrad['method'] = 'ghost';
  const sqNorms = tf.tidy(() => {
    const idx = tf.reshape(tf.cast(indices, 'int32'), [B, T]);
    const z3 = tf.reshape(z, [B, T, D]);
    if (T === 1) {
      chosen = 'outer';
      return tf.keep(sumSq(z3, [1, 2]));
    }
    if (method !== 'ghost') {
      chosen = 'instantiate';
      // Rows of example i land in segment i·T + (first position of that row in example i).
      const eq = tf.equal(tf.expandDims(idx, 2), tf.expandDims(idx, 1));
      const first = tf.argMax(tf.cast(eq, 'int32'), 2); // [B, T]: first position with the same row
      const seg = tf.add(
        first,
        tf.reshape(tf.mul(tf.range(0, B, 1, 'int32'), tf.scalar(T, 'int32')), [B, 1]),
      );
      const per = tf.unsortedSegmentSum(
        tf.reshape(z3, [B * T, D]),
        tf.reshape(seg, [B * T]) as Tensor1D,
        B * T,
      );
      return tf.keep(tf.sum(tf.reshape(tf.square(per), [B, T * D]), 1));
    }
    const same = tf.cast(tf.equal(tf.expandDims(idx, 2), tf.expandDims(idx, 1)), 'float32');
    return tf.keep(tf.sum(tf.mul(tf.matMul(z3, z3, false, true), same), [1, 2]));
  });
  return {
    sqNorms,
    method: chosen,
    weightedSum(cw) {
      return tf.tidy(() => {
        const zw = tf.reshape(tf.mul(tf.reshape(z, [B, T, D]), cw.col3), [B * T, D]);
        const ids = tf.reshape(tf.cast(indices, 'int32'), [B * T]);
        return [[weight, tf.keep(tf.unsortedSegmentSum(zw, ids as Tensor1D, V))]];
      });
    },
    dispose: () => sqNorms.dispose(),
  };
}

/** Gains and biases: gᵢ = Σ over positions of zᵢ∘x̂ᵢ (gain) and of zᵢ (bias), each [C]. */
function affineRule(xhat: Tensor, z: Tensor, gain: string | null, bias: string | null): SiteGrad {
  const B = xhat.shape[0]!;
  const C = xhat.shape[xhat.rank - 1]!;
  const held: [string, Tensor][] = [];
  const sqNorms = tf.tidy(() => {
    const z3 = tf.reshape(z, [B, -1, C]);
    const parts: Tensor[] = [];
    if (gain) {
      const g = tf.keep(tf.sum(tf.mul(z3, tf.reshape(xhat, [B, -1, C])), 1));
      held.push([gain, g]);
      parts.push(sumSq(g, [1]));
    }
    if (bias) {
      const b = tf.keep(tf.sum(z3, 1));
      held.push([bias, b]);
      parts.push(sumSq(b, [1]));
    }
    return tf.keep(sumParts(B, parts));
  });
  return {
    sqNorms,
    method: 'outer',
    weightedSum: (cw) =>
      tf.tidy(() =>
        held.map(([n, g]) => [n, tf.keep(tf.reshape(tf.matMul(cw.row, g), [C]))] as [string, Tensor]),
      ),
    dispose: () => (tf.dispose(held.map(([, t]) => t)), sqNorms.dispose()),
  };
}
