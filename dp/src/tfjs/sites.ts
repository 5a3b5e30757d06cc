// Per-sample gradient rules, one per site kind. Each rule gets a site's recorded input and the
// per-example gradient of the loss w.r.t. the site's pre-activation output z (from the probes),
// and returns (1) each example's squared gradient norm over the site's trainable parameters and
// (2) a function that forms Σᵢ wᵢ·gᵢ for per-example weights w — the book-keeping clipped sum
// (Bu et al. 2022): the weight gradient is one matmul of the reweighted activations and output
// gradients, so per-example gradients are never formed unless instantiation was the cheaper way
// to get the norms, in which case they are reused.
import tf, { type Tensor, type Tensor1D } from './tf.js';
import type { Site } from './layer.js';

/** How a linear site computes norms: `ghost` (Gram matrices), `instantiate` (per-example weight gradients), or the cheaper one. */
export type NormMethod = 'auto' | 'ghost' | 'instantiate';

export interface SiteGrad {
  /** Σ over the site's trainable parameters of ‖gᵢ‖², shape [B]. */
  readonly sqNorms: Tensor;
  /** How the weight norm was computed (for diagnostics and tests). */
  readonly method: 'outer' | 'ghost' | 'instantiate' | 'none';
  /** Σᵢ wᵢ·gᵢ per trainable parameter, w of shape [B]. Tensors are new (caller owns them). */
  weightedSum(w: Tensor): [string, Tensor][];
  /** Frees what the rule held between the norm and the clip phases. */
  dispose(): void;
}

/**
 * Mixed ghost clipping (Bu et al. 2023): for a linear map applied at T positions, the ghost norm
 * ⟨aaᵀ, zzᵀ⟩ costs O(B·T²·(Din+Dout)) time and O(B·T²) memory, instantiating the per-example
 * gradients aᵀz costs O(B·T·Din·Dout) time and O(B·Din·Dout) memory; ghost wins on memory
 * exactly when 2T² < Din·Dout, which is Li et al.'s and Bu et al.'s layer-wise criterion.
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

const sumSq = (t: Tensor, axes: number[]) => tf.sum(tf.square(t), axes);
const rowWeights = (w: Tensor) => tf.reshape(w, [1, -1]);

/**
 * Linear rule for a [B, T, Din] input and [B, T, Dout] output gradient (T = 1 for 2-D input).
 * `weightShape` reshapes the [Din, Dout] weight sum (conv kernels).
 */
function linearRule(
  a: Tensor,
  z: Tensor,
  weight: string | null,
  bias: string | null,
  method: NormMethod,
  weightShape?: readonly number[],
): SiteGrad {
  const B = a.shape[0]!;
  const din = a.shape[a.rank - 1]!;
  const dout = z.shape[z.rank - 1]!;
  const T = a.size / (B * din);
  const held: Tensor[] = [];
  let chosen: SiteGrad['method'] = 'none';
  let instantiated: Tensor | null = null;
  let biasSums: Tensor | null = null;
  const sqNorms = tf.tidy(() => {
    const a3 = tf.reshape(a, [B, T, din]);
    const z3 = tf.reshape(z, [B, T, dout]);
    let sq: Tensor = tf.zeros([B]);
    if (weight) {
      if (T === 1) {
        chosen = 'outer';
        // ‖aᵢ zᵢᵀ‖²_F = ‖aᵢ‖²·‖zᵢ‖² (Goodfellow 2015).
        sq = tf.mul(sumSq(a3, [1, 2]), sumSq(z3, [1, 2]));
      } else if (chooseLinearMethod(T, din, dout, method) === 'ghost') {
        chosen = 'ghost';
        sq = tf.sum(tf.mul(tf.matMul(a3, a3, false, true), tf.matMul(z3, z3, false, true)), [1, 2]);
      } else {
        chosen = 'instantiate';
        const g = tf.keep(tf.matMul(a3, z3, true, false));
        held.push(g);
        instantiated = g;
        sq = sumSq(g, [1, 2]);
      }
    }
    if (bias) {
      const bs = tf.keep(T === 1 ? tf.reshape(z3, [B, dout]) : tf.sum(z3, 1));
      held.push(bs);
      biasSums = bs;
      sq = tf.add(sq, sumSq(bs, [1]));
    }
    return tf.keep(sq);
  });
  held.push(sqNorms);
  return {
    sqNorms,
    method: chosen,
    weightedSum(w) {
      return tf.tidy(() => {
        const out: [string, Tensor][] = [];
        if (weight) {
          let g: Tensor;
          if (instantiated) {
            g = tf.matMul(rowWeights(w), tf.reshape(instantiated, [B, din * dout]));
          } else {
            // Reweight whichever side is narrower, then one [Din, B·T]·[B·T, Dout] matmul.
            const wb = tf.reshape(w, [B, 1, 1]);
            const a3 = tf.reshape(a, [B, T, din]);
            const z3 = tf.reshape(z, [B, T, dout]);
            const [aw, zw] = din <= dout ? [tf.mul(a3, wb), z3] : [a3, tf.mul(z3, wb)];
            g = tf.matMul(tf.reshape(aw, [B * T, din]), tf.reshape(zw, [B * T, dout]), true, false);
          }
          out.push([weight, tf.reshape(g, weightShape ? [...weightShape] : [din, dout])]);
        }
        if (bias && biasSums) out.push([bias, tf.reshape(tf.matMul(rowWeights(w), biasSums), [dout])]);
        return out.map(([n, t]) => [n, tf.keep(t)] as [string, Tensor]);
      });
    },
    dispose: () => tf.dispose(held),
  };
}

/**
 * im2col for NHWC input: [B, Ho·Wo, kh·kw·C] patches whose last axis is ordered (kh, kw, C),
 * the flattening order of a [kh, kw, Cin, Cout] kernel, so a conv is patches · kernel[K, Cout].
 * Built from kh·kw strided slices (cheap copies) rather than a one-hot convolution, whose cost
 * would grow with (kh·kw)².
 */
export function im2col(
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
 * Builds the rule for one traced site. `z` is the per-example output gradient (the probe's
 * gradient); `trainable` says which of the site's parameters count.
 */
export function siteGrad(
  site: Site,
  z: Tensor,
  trainable: (param: string) => boolean,
  shapeOf: (param: string) => readonly number[],
  method: NormMethod,
): SiteGrad {
  const live = (p: string | null) => (p !== null && trainable(p) ? p : null);
  switch (site.rule) {
    case 'linear':
      return linearRule(site.input, z, live(site.weight), live(site.bias), method);
    case 'conv2d': {
      const patches = im2col(site.input, site.kernelSize, site.strides, site.padding);
      const [kh, kw] = site.kernelSize;
      const cin = site.input.shape[3]!;
      const rule = linearRule(patches, z, live(site.weight), live(site.bias), method, [
        kh,
        kw,
        cin,
        z.shape[3]!,
      ]);
      return { ...rule, dispose: () => (rule.dispose(), patches.dispose()) };
    }
    case 'embedding':
      return embeddingRule(site.indices, z, site.weight, shapeOf(site.weight)[0]!, method);
    case 'affine':
      return affineRule(site.normalized, z, live(site.gain), live(site.bias));
  }
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
    weightedSum(w) {
      return tf.tidy(() => {
        const zw = tf.reshape(tf.mul(tf.reshape(z, [B, T, D]), tf.reshape(w, [B, 1, 1])), [B * T, D]);
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
    let sq: Tensor = tf.zeros([B]);
    if (gain) {
      const g = tf.keep(tf.sum(tf.mul(z3, tf.reshape(xhat, [B, -1, C])), 1));
      held.push([gain, g]);
      sq = tf.add(sq, sumSq(g, [1]));
    }
    if (bias) {
      const b = tf.keep(tf.sum(z3, 1));
      held.push([bias, b]);
      sq = tf.add(sq, sumSq(b, [1]));
    }
    return tf.keep(sq);
  });
  return {
    sqNorms,
    method: 'outer',
    weightedSum: (w) =>
      tf.tidy(() =>
        held.map(([n, g]) => [n, tf.keep(tf.reshape(tf.matMul(rowWeights(w), g), [C]))] as [string, Tensor]),
      ),
    dispose: () => (tf.dispose(held.map(([, t]) => t)), sqNorms.dispose()),
  };
}
