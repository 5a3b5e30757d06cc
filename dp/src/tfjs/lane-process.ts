// One lane of DataParallelLanes (lanes.ts): a child process holding a copy of the model, answering
// one request at a time over the IPC channel. It exits when the channel closes (its parent died
// or closed it), so no lane outlives the worker that started it.
import { pathToFileURL } from 'node:url';
import { dpSgdStep, paramGrads } from './engine.js';
import type { Layer } from './layer.js';
import type { LaneReply, LaneRequest, ModelRecipe, WireTensor } from './lanes.js';
import { DpModel } from './model.js';
import { tanhCnn, transformerEncoder } from './models.js';
import tf, { type Tensor } from './tf.js';

let model: DpModel | null = null;

const fromWire = (w: WireTensor): Tensor => tf.tensor(w.data, w.shape, w.dtype);

function setParams(params: [string, WireTensor][]): void {
  for (const [name, w] of params) {
    const t = fromWire(w);
    model!.setParam(name, t);
    t.dispose();
  }
}

function sumsOf(m: Map<string, Tensor>): [string, Float32Array][] {
  return [...m].map(([n, t]) => [n, t.dataSync() as Float32Array]);
}

async function build(recipe: ModelRecipe): Promise<Layer[]> {
  if ('module' in recipe) {
    const url = recipe.module.startsWith('file:') ? recipe.module : pathToFileURL(recipe.module).href;
    const mod = (await import(url)) as Record<string, unknown>;
    const f = mod[recipe.export];
    if (typeof f !== 'function')
      throw new TypeError(`${recipe.module} has no function export "${recipe.export}"`);
    const out = (await (f as (...a: unknown[]) => unknown)(...(recipe.args ?? []))) as
      Layer[] | { layers: Layer[] };
    return Array.isArray(out) ? out : out.layers;
  }
  if (recipe.model === 'tanhCnn') return tanhCnn(recipe.options);
  if (recipe.model === 'transformerEncoder') return transformerEncoder(recipe.options);
  throw new TypeError(`unknown model recipe ${JSON.stringify(recipe)}`);
}

async function handle(req: LaneRequest): Promise<LaneReply> {
  if (req.op === 'init') {
    model?.dispose();
    model = new DpModel(await build(req.recipe));
    const trainable = new Set(req.trainable);
    model.setTrainable(() => true, false);
    model.setTrainable((n) => trainable.has(n), true);
    const names = model.paramNames.map((n): [string, number[]] => [n, [...model!.spec(n).shape]]);
    const known = new Set(model.paramNames);
    if (req.params.every(([n]) => known.has(n))) setParams(req.params);
    return { ok: true, names };
  }
  if (!model) throw new Error('the lane has no model yet: send init first');
  if (req.op === 'set') {
    setParams(req.params);
    return { ok: true };
  }
  if (req.params) setParams(req.params);
  const x = fromWire(req.x);
  const y = fromWire(req.y);
  try {
    if (req.op === 'dp') {
      const s = dpSgdStep(model, x, y, req.options);
      try {
        return { ok: true, sums: sumsOf(s.sum), clipped: s.clippedCount.dataSync()[0]! };
      } finally {
        s.dispose();
      }
    }
    const g = paramGrads(model, x, y);
    try {
      return { ok: true, sums: sumsOf(g) };
    } finally {
      tf.dispose([...g.values()]);
    }
  } finally {
    tf.dispose([x, y]);
  }
}

// Requests are answered one at a time, in the order they came (the parent matches replies by order).
let chain: Promise<void> = Promise.resolve();
process.on('message', (req: LaneRequest) => {
  chain = chain.then(async () => {
    let reply: LaneReply;
    try {
      reply = await handle(req);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      reply = { ok: false, name: err.name, message: err.message };
    }
    process.send!(reply);
  });
});
process.on('disconnect', () => process.exit(0));
