// The DP-SGD gradient step of @tensorguard/dp/tfjs (per-sample clipping without a per-example
// loop) against the non-private step of the same model, and against Opacus on the same models,
// batch and thread count: the tanh CNN of Papernot et al. 2020 on 28×28×1 and a 2-block
// transformer encoder with LoRA adapters on the attention projections (frozen base).
//
// Each measured step is the whole gradient step plus an optimizer-free SGD update (W -= lr·g),
// ending with a read of one value so that all work has finished. DP and non-private steps are
// interleaved, in an order rotated every step, so that load from other processes hits both
// alike; the lane variants run in a block of their own after the rest; times are medians. Memory is
// the peak of tf.memory().numBytes during one step above the level before it (tensor bytes held
// by tfjs; TensorFlow's own scratch inside a kernel is not seen), from tf.profile.
//
// Two configurations of ours run interleaved: one process whose TensorFlow has an intra-op
// thread per core, and the batch split over one lane process per core (DataParallelLanes, one
// intra-op thread each; its non-private twin is split the same way). `ours_over_opacus_*` takes
// the faster; the `_single_process` and `_lanes` keys give each. Opacus runs as users run it: one
// process, torch threads = cores.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Benchmark, Row } from '../types.js';

import type * as DpTfjsModule from '@tensorguard/dp/tfjs';
import type { DpModel, Tensor } from '@tensorguard/dp/tfjs';

// Loaded dynamically in run(): TensorFlow's thread pools must be configured before it loads.
type DpTfjs = typeof DpTfjsModule;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (v: number, digits = 1) => Number(v.toFixed(digits));

interface Workload {
  name: 'cnn' | 'transformer';
  model: DpModel;
  recipe: DpTfjsModule.ModelRecipe;
  x: Tensor;
  y: Tensor;
}

type Variant =
  | 'non-private'
  | 'dp book-keeping'
  | 'dp second pass'
  | 'dp book-keeping, chunks of 64'
  | 'non-private, lanes'
  | 'dp book-keeping, lanes';

const LANE_VARIANTS: readonly Variant[] = ['non-private, lanes', 'dp book-keeping, lanes'];

function makeWorkloads(dp: DpTfjs, batch: number): Workload[] {
  const { tf } = dp;
  const transformer = {
    vocabSize: 1000,
    seqLen: 32,
    dim: 64,
    heads: 4,
    blocks: 2,
    lora: { rank: 8, alpha: 16 },
  };
  return [
    {
      name: 'cnn',
      model: new dp.DpModel(dp.tanhCnn(), { seed: 1 }),
      recipe: { model: 'tanhCnn' },
      x: tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', 3),
      y: tf.randomUniform([batch], 0, 10, 'int32', 4),
    },
    {
      name: 'transformer',
      model: new dp.DpModel(dp.transformerEncoder(transformer), { seed: 2 }),
      recipe: { model: 'transformerEncoder', options: transformer },
      x: tf.randomUniform([batch, 32], 0, 1000, 'int32', 5),
      y: tf.randomUniform([batch], 0, 2, 'int32', 6),
    },
  ];
}

/**
 * One step of a variant, update included; returns when all work is done. The lane variants split
 * the batch over `lanes` processes (DataParallelLanes) and send the updated trainable parameters
 * with the next step, so the update's cost is inside the timed step.
 */
function stepFn(
  dp: DpTfjs,
  w: Workload,
  variant: Variant,
  lanes: DpTfjsModule.DataParallelLanes | null,
): () => void | Promise<void> {
  const { tf } = dp;
  const lr = 1e-3;
  const B = w.x.shape[0]!;
  const apply = (grads: Map<string, Tensor>, scale: number) => {
    for (const [n, g] of grads) {
      const next = tf.tidy(() => tf.sub(w.model.getParam(n), tf.mul(g, lr * scale)));
      w.model.setParam(n, next);
      next.dispose();
    }
    w.model.getParam(w.model.trainableNames[0]!).dataSync();
  };
  if (variant === 'non-private, lanes')
    return async () => {
      const g = await lanes!.paramGrads(w.x, w.y);
      apply(g, 1 / B);
      tf.dispose([...g.values()]);
      lanes!.syncParams();
    };
  if (variant === 'dp book-keeping, lanes')
    return async () => {
      const s = await lanes!.dpSgdStep(w.x, w.y, { clipNorm: 1, clipMethod: 'bookkeeping' });
      apply(s.sum, 1 / B);
      s.dispose();
      lanes!.syncParams();
    };
  if (variant === 'non-private')
    return () => {
      const g = dp.paramGrads(w.model, w.x, w.y);
      apply(g, 1 / B);
      tf.dispose([...g.values()]);
    };
  const options = {
    clipNorm: 1,
    clipMethod: variant === 'dp second pass' ? ('second-pass' as const) : ('bookkeeping' as const),
    maxChunkSize: variant === 'dp book-keeping, chunks of 64' ? 64 : undefined,
  };
  return () => {
    const s = dp.dpSgdStep(w.model, w.x, w.y, options);
    apply(s.sum, 1 / B);
    s.dispose();
  };
}

async function peakBytes(dp: DpTfjs, step: () => void | Promise<void>): Promise<number> {
  const before = dp.tf.memory().numBytes;
  const info = await dp.tf.profile(() => step() as void);
  return Math.max(0, info.peakBytes - before);
}

interface OpacusResult {
  model: string;
  mode: string;
  ms_per_step?: number;
  examples_per_s?: number;
  error?: string;
}

function runOpacus(root: string, threads: number, batch: number, steps: number, log: (l: string) => void) {
  const python = path.join(root, '.venv-bench', 'bin', 'python');
  const script = path.join(root, 'dp', 'scripts', 'opacus_bench.py');
  if (!fs.existsSync(python))
    return { error: `no ${python}: create it and pip install torch opacus (see dp/src/tfjs/README.md)` };
  log(`Opacus: ${python} ${path.relative(root, script)} --threads ${threads}`);
  const r = spawnSync(
    python,
    [script, '--threads', String(threads), '--batch', String(batch), '--steps', String(steps)],
    { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: String(threads) } },
  );
  if (r.status !== 0) return { error: `opacus_bench.py exited ${r.status}: ${(r.stderr ?? '').slice(-500)}` };
  const parsed = JSON.parse(r.stdout) as { torch: string; opacus: string; results: OpacusResult[] };
  return parsed;
}

/** ε after 100,000 Poisson-sampled Gaussian steps, if the accounting module offers an RdpAccountant. */
async function accountantMs(): Promise<{ perStepMs: number; countMs: number; epsilon: number } | null> {
  const mod = (await import('@tensorguard/dp')) as Record<string, unknown>;
  const Acc = mod.RdpAccountant as
    (new () => { compose(e: unknown, n?: number): unknown; epsilon(d: number): number }) | undefined;
  const poisson = mod.poissonSampledEvent as ((q: number, e: unknown) => unknown) | undefined;
  const gaussian = mod.gaussianEvent as ((s: number) => unknown) | undefined;
  if (!Acc || !poisson || !gaussian) return null;
  const event = poisson(256 / 60000, gaussian(1.1));
  // 100k identical steps composed at once (the accountant multiplies the curve by the count)...
  let t0 = performance.now();
  const a = new Acc();
  a.compose(event, 100_000);
  const epsilon = a.epsilon(1e-5);
  const countMs = performance.now() - t0;
  // ...and one compose call per step, as a training loop makes them (1000 calls, scaled).
  t0 = performance.now();
  const b = new Acc();
  for (let i = 0; i < 1000; i++) b.compose(event);
  b.epsilon(1e-5);
  return { perStepMs: (performance.now() - t0) * 100, countMs, epsilon };
}

export const benchmark: Benchmark = {
  description:
    'DP-SGD step (per-sample clipping, book-keeping) vs non-private step and Opacus: tanh CNN 28×28 and LoRA transformer, batch 256',
  async run({ quick, root, log, args }) {
    const threads = os.cpus().length;
    // TensorFlow reads its thread-pool sizes once, when the native binding loads: set them first.
    process.env.TF_NUM_INTRAOP_THREADS ??= String(threads);
    process.env.TF_NUM_INTEROP_THREADS ??= '1';
    process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
    const dp: DpTfjs = await import('@tensorguard/dp/tfjs');
    const batch = 256;
    const steps = quick ? 4 : 30;
    const warmup = 2;
    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    // Lanes: the batch split over one process per core, each with one intra-op thread
    // (DataParallelLanes); --lanes=K to choose, --lanes=1 to leave them out.
    const laneArg = args.find((a) => a.startsWith('--lanes='))?.slice('--lanes='.length);
    const laneCount = laneArg === undefined ? threads : Number(laneArg);
    const variants: Variant[] = [
      'non-private',
      'dp book-keeping',
      'dp second pass',
      'dp book-keeping, chunks of 64',
      ...(laneCount >= 2 ? LANE_VARIANTS : []),
    ];
    const perModel: Record<
      string,
      { np: number; dp: number; npMem: number; dpMem: number; npLanes?: number; dpLanes?: number }
    > = {};
    const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
    for (const w of makeWorkloads(dp, batch).filter((wl) => !only || wl.name === only)) {
      const lanes =
        laneCount >= 2 ? await dp.DataParallelLanes.start(w.model, w.recipe, { lanes: laneCount }) : null;
      const fns = variants.map((v) => stepFn(dp, w, v, lanes));
      for (const f of fns) for (let i = 0; i < warmup; i++) await f();
      const times: number[][] = variants.map(() => []);
      const cpu: number[][] = variants.map(() => []);
      log(
        `${w.name}: ${steps} interleaved steps of each variant (intra-op threads ${process.env.TF_NUM_INTRAOP_THREADS}` +
          `${lanes ? `; lane variants: ${laneCount} lane processes, 1 intra-op thread each` : ''})`,
      );
      // Two blocks: the one-process variants, then the lane variants, each interleaved with the
      // order rotated every step. A lane step leaves its processes' TensorFlow threads spinning
      // for a moment, which slowed whichever variant came next (measured: the non-private CNN
      // step ~10% slower right after a lane step); a fixed order put that on one variant.
      const blocks = [
        variants.flatMap((v, k) => (LANE_VARIANTS.includes(v) ? [] : [k])),
        variants.flatMap((v, k) => (LANE_VARIANTS.includes(v) ? [k] : [])),
      ].filter((b) => b.length > 0);
      for (const block of blocks)
        for (let i = 0; i < steps; i++)
          for (let j = 0; j < block.length; j++) {
            const k = block[(i + j) % block.length]!;
            const c0 = process.cpuUsage();
            const t0 = performance.now();
            await fns[k]!();
            times[k]!.push(performance.now() - t0);
            const c = process.cpuUsage(c0);
            cpu[k]!.push((c.user + c.system) / 1000);
          }
      // Peak tensor memory is seen in this process only: not measured for the lane variants.
      const mems: (number | null)[] = [];
      for (const [k, f] of fns.entries())
        mems.push(LANE_VARIANTS.includes(variants[k]!) ? null : await peakBytes(dp, f));
      lanes?.close();
      const msOf = (v: Variant) => median(times[variants.indexOf(v)]!);
      variants.forEach((v, k) => {
        const ms = median(times[k]!);
        const base = LANE_VARIANTS.includes(v) ? msOf('non-private, lanes') : msOf('non-private');
        const mem = mems[k];
        rows.push({
          model: w.name,
          variant: v === 'non-private, lanes' || v === 'dp book-keeping, lanes' ? `${v} (${laneCount})` : v,
          ms_per_step: round(ms),
          examples_per_s: round((batch / ms) * 1000),
          time_vs_nonprivate: round(ms / base, 3),
          // The lanes' CPU time is spent in their own processes.
          cpu_ms_per_step: lanes && LANE_VARIANTS.includes(v) ? null : round(median(cpu[k]!)),
          peak_tensor_mb: mem === null ? null : round(mem! / 2 ** 20, 2),
          memory_vs_nonprivate: mem === null ? null : round(mem! / mems[0]!, 3),
        });
      });
      perModel[w.name] = {
        np: msOf('non-private'),
        dp: msOf('dp book-keeping'),
        npMem: mems[0]!,
        dpMem: mems[1]!,
        ...(lanes ? { npLanes: msOf('non-private, lanes'), dpLanes: msOf('dp book-keeping, lanes') } : {}),
      };
      w.model.dispose();
      dp.tf.dispose([w.x, w.y]);
    }
    const names = Object.keys(perModel);
    for (const n of names) {
      const m = perModel[n]!;
      summary[`dp_over_nonprivate_time_${n}`] = round(m.dp / m.np, 3);
      summary[`dp_over_nonprivate_memory_${n}`] = round(m.dpMem / m.npMem, 3);
      if (m.dpLanes !== undefined)
        summary[`dp_over_nonprivate_time_${n}_lanes`] = round(m.dpLanes / m.npLanes!, 3);
    }
    summary.dp_over_nonprivate_time = Math.max(...names.map((n) => summary[`dp_over_nonprivate_time_${n}`]!));
    summary.dp_over_nonprivate_memory = Math.max(
      ...names.map((n) => summary[`dp_over_nonprivate_memory_${n}`]!),
    );

    const opacus = args.includes('--no-opacus')
      ? { error: 'skipped (--no-opacus)' }
      : runOpacus(root, threads, batch, quick ? 3 : 20, log);
    if ('error' in opacus) {
      log(`Opacus not run: ${opacus.error}`);
      rows.push({ model: 'opacus', variant: String(opacus.error) });
    } else {
      const ratios: number[] = [];
      for (const r of opacus.results) {
        rows.push({
          model: r.model,
          variant: `opacus ${r.mode} (torch ${opacus.torch}, opacus ${opacus.opacus})`,
          ms_per_step: r.ms_per_step === undefined ? null : round(r.ms_per_step),
          examples_per_s: r.examples_per_s === undefined ? null : round(r.examples_per_s),
          time_vs_nonprivate: null,
          peak_tensor_mb: null,
          memory_vs_nonprivate: null,
          ...(r.error ? { error: r.error } : {}),
        });
      }
      for (const n of names) {
        // Against the faster of Opacus' two private modes (per-sample hooks, ghost clipping).
        const best = Math.max(
          ...opacus.results
            .filter((r) => r.model === n && r.mode !== 'nonprivate')
            .map((r) => r.examples_per_s ?? 0),
        );
        // Ours: the faster of our DP configurations on this machine (one process with an
        // intra-op thread per core, or one lane process per core); both are reported.
        const m = perModel[n]!;
        const single = (batch / m.dp) * 1000;
        const laned = m.dpLanes === undefined ? 0 : (batch / m.dpLanes) * 1000;
        const ours = Math.max(single, laned);
        if (best > 0) {
          summary[`ours_over_opacus_throughput_${n}`] = round(ours / best, 2);
          summary[`ours_over_opacus_throughput_${n}_single_process`] = round(single / best, 2);
          if (laned) summary[`ours_over_opacus_throughput_${n}_lanes`] = round(laned / best, 2);
          ratios.push(ours / best);
        }
      }
      if (ratios.length) summary.ours_over_opacus_throughput = round(Math.min(...ratios), 2);
    }

    const acc = await accountantMs();
    if (acc) {
      summary.accountant_ms_100k_steps = round(acc.countMs, 2);
      rows.push({
        model: 'accountant',
        variant: `RdpAccountant compose(event, 100000) + ε (ε=${acc.epsilon.toFixed(3)} at δ=1e-5, q=256/60000, σ=1.1)`,
        ms_per_step: round(acc.countMs, 2),
      });
      rows.push({
        model: 'accountant',
        variant: '100000 × compose(event) + ε, extrapolated from 1000 calls',
        ms_per_step: round(acc.perStepMs, 0),
      });
    } else log('accountant_ms_100k_steps omitted: @tensorguard/dp exports no RdpAccountant yet');
    return { rows, summary };
  },
};
