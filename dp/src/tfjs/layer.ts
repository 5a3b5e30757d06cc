// The small functional model API the engine understands: layers own explicit parameter specs,
// read parameter values from a context, and report every trainable linear piece of their
// computation as a *site* (the piece's input, its parameters, and its pre-activation output).
// A site's output is what the engine differentiates against while tracing; its gradient is the
// per-example output gradient the per-sample rules in sites.ts need.
import type { Tensor } from './tf.js';

/** How a parameter is initialised. `uniform` draws from U(-limit, limit); `normal` from N(0, stddev²). */
export type ParamInit = 'zeros' | 'ones' | { uniform: number } | { normal: number };

export interface ParamSpec {
  /** Unique within a model: `<layer name>.<local name>`. */
  readonly name: string;
  readonly shape: readonly number[];
  /** Frozen parameters get no gradient and do not count towards per-example norms. */
  readonly trainable: boolean;
  readonly init: ParamInit;
}

/**
 * One trainable linear piece of a layer, reported with its pre-activation output `z`.
 *
 * - `linear`: z = input · weight (+ bias); input [B, ..., Din], weight [Din, Dout], z [B, ..., Dout].
 * - `conv2d`: z = conv2d(input, weight) (+ bias), NHWC, weight [kh, kw, Cin, Cout].
 * - `embedding`: z = weight[indices]; indices int32 [B] or [B, T], weight [V, D].
 * - `affine`: z = normalized ∘ gain + bias, gain and bias [C] broadcast over normalized [B, ..., C].
 * - `lora`: z = input · W + b with the adapters merged into the weight, input [B, ..., Din]; W and b
 *   are column blocks, block k being outputScaleₖ·(W₀ₖ + scaleₖ·Aₖ·Bₖ) and outputScaleₖ·b₀ₖ
 *   (`LoraBlock`). One matmul for the whole projection; the rule recovers A's and B's per-example
 *   gradients from the input and z's gradient.
 *
 * Parameter fields name model parameters (null where the piece has none); frozen ones are
 * skipped by the engine.
 */
export type Site =
  | {
      readonly rule: 'linear';
      readonly input: Tensor;
      readonly weight: string | null;
      readonly bias: string | null;
    }
  | {
      readonly rule: 'conv2d';
      readonly input: Tensor;
      readonly weight: string;
      readonly bias: string | null;
      readonly kernelSize: readonly [number, number];
      readonly strides: readonly [number, number];
      readonly padding: 'same' | 'valid';
    }
  | { readonly rule: 'embedding'; readonly indices: Tensor; readonly weight: string }
  | {
      readonly rule: 'affine';
      readonly normalized: Tensor;
      readonly gain: string | null;
      readonly bias: string | null;
    }
  | { readonly rule: 'lora'; readonly input: Tensor; readonly blocks: readonly LoraBlock[] };

/**
 * One column block of a `lora` site's output: outputScale·(x·(W₀ + scale·A·B) + b₀), with A
 * [Din, r], B [r, units], W₀ [Din, units] and b₀ [units] (W₀ and b₀ usually frozen).
 */
export interface LoraBlock {
  readonly weight: string;
  readonly bias: string | null;
  readonly a: string;
  readonly b: string;
  /** Output columns of this block. */
  readonly units: number;
  /** The adapter scale α/r. */
  readonly scale: number;
  /** A factor on the whole block (attention's 1/√dh on the queries); 1 elsewhere. */
  readonly outputScale: number;
}

export type SiteRule = Site['rule'];

/** What a layer's forward pass reads parameters from and reports sites to. */
export interface ForwardContext {
  param(name: string): Tensor;
  /**
   * Reports a site with its pre-activation output and returns the tensor the layer must use in
   * its place (today always the output itself; the engine differentiates w.r.t. it).
   */
  site(layer: Layer, site: Site, output: Tensor): Tensor;
}

export interface Layer {
  /** The rule family the engine checks support against (`dense`, `conv2d`, ... or a custom name). */
  readonly kind: string;
  readonly name: string;
  /** Parameters this layer owns directly (not those of its children). */
  readonly params: readonly ParamSpec[];
  readonly children: readonly Layer[];
  forward(x: Tensor, ctx: ForwardContext): Tensor;
}

/** Every layer of a tree, parents before children. */
export function* walkLayers(layers: readonly Layer[]): Generator<Layer> {
  for (const l of layers) {
    yield l;
    yield* walkLayers(l.children);
  }
}

/** Parameter names a site reads, by role (frozen or not). */
export function siteParams(site: Site): string[] {
  switch (site.rule) {
    case 'linear':
      return [site.weight, site.bias].filter((p): p is string => p !== null);
    case 'conv2d':
      return [site.weight, site.bias].filter((p): p is string => p !== null);
    case 'embedding':
      return [site.weight];
    case 'affine':
      return [site.gain, site.bias].filter((p): p is string => p !== null);
    case 'lora':
      return site.blocks.flatMap((k) => [k.weight, k.bias, k.a, k.b].filter((p): p is string => p !== null));
  }
}
