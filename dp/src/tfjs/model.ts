// A model: ordered layers plus the current value of every parameter. Values are plain tensors
// owned by the model (replaced with setParam, freed with dispose); the engine reads them through
// a ForwardContext, which is how it records sites or substitutes differentiable parameter arguments.
import tf, { type Tensor } from './tf.js';
import { type ForwardContext, type Layer, type ParamInit, type ParamSpec, walkLayers } from './layer.js';

export interface DpModelOptions {
  /** Seed for the initial parameter values (default 0). */
  seed?: number;
}

function initialise(s: ParamSpec, seed: number): Tensor {
  const init: ParamInit = s.init;
  const shape = [...s.shape];
  if (init === 'zeros') return tf.zeros(shape);
  if (init === 'ones') return tf.ones(shape);
  if ('uniform' in init) return tf.randomUniform(shape, -init.uniform, init.uniform, 'float32', seed);
  return tf.randomNormal(shape, 0, init.normal, 'float32', seed);
}

export class DpModel {
  readonly layers: readonly Layer[];
  private readonly specs = new Map<string, ParamSpec & { trainable: boolean }>();
  private readonly values = new Map<string, Tensor>();
  /** Where each parameter lives, for error messages. */
  private readonly owner = new Map<string, Layer>();

  /** Builds the model and initialises every parameter; throws RangeError on a duplicate name. */
  constructor(layers: Layer[], options: DpModelOptions = {}) {
    this.layers = layers;
    let seed = options.seed ?? 0;
    for (const layer of walkLayers(layers)) {
      for (const p of layer.params) {
        if (this.specs.has(p.name))
          throw new RangeError(`duplicate parameter name "${p.name}" (layer "${layer.name}")`);
        this.specs.set(p.name, { ...p });
        this.owner.set(p.name, layer);
        this.values.set(p.name, tf.keep(initialise(p, seed++)));
      }
    }
  }

  /** All parameter names, in layer order. */
  get paramNames(): string[] {
    return [...this.specs.keys()];
  }

  /** Names of the trainable parameters, in layer order: the order of flat gradient vectors. */
  get trainableNames(): string[] {
    return [...this.specs.values()].filter((s) => s.trainable).map((s) => s.name);
  }

  spec(name: string): ParamSpec {
    const s = this.specs.get(name);
    if (!s) throw new RangeError(`unknown parameter "${name}"`);
    return s;
  }

  isTrainable(name: string): boolean {
    return this.spec(name).trainable;
  }

  /** The layer that owns a parameter. */
  ownerOf(name: string): Layer {
    this.spec(name);
    return this.owner.get(name)!;
  }

  /** Marks every parameter whose name satisfies `match` trainable or frozen (fine-tuning). */
  setTrainable(match: (name: string) => boolean, trainable: boolean): void {
    for (const s of this.specs.values()) if (match(s.name)) s.trainable = trainable;
  }

  getParam(name: string): Tensor {
    this.spec(name);
    return this.values.get(name)!;
  }

  /** Replaces a parameter's value with a copy of `value` (same shape); the old value is disposed. */
  setParam(name: string, value: Tensor): void {
    const s = this.spec(name);
    if (value.shape.join(',') !== s.shape.join(','))
      throw new RangeError(
        `parameter "${name}" has shape [${s.shape.join(', ')}], got [${value.shape.join(', ')}]`,
      );
    const old = this.values.get(name)!;
    this.values.set(name, tf.keep(tf.clone(value)));
    old.dispose();
  }

  /** Logits for input x. Without a context, parameters are read from the model and no sites are traced. */
  forward(x: Tensor, ctx: ForwardContext = this.plainContext()): Tensor {
    return this.layers.reduce((h, l) => l.forward(h, ctx), x);
  }

  /** A context that reads parameters from `overrides` first, then from the model, and traces nothing. */
  plainContext(overrides?: ReadonlyMap<string, Tensor>): ForwardContext {
    return {
      param: (name) => overrides?.get(name) ?? this.getParam(name),
      site: (_layer, _site, output) => output,
    };
  }

  dispose(): void {
    for (const t of this.values.values()) t.dispose();
    this.values.clear();
  }
}
