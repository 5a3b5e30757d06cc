// DP-LoRA fine-tune of all-MiniLM-L6-v2 on Rotten Tomatoes, side by side in one run:
//   ours     the TensorGuard job (4 workers, secure aggregation, ε = 8 at δ = 1e-5) — the hook in
//            bench/src/finetune/ours.ts;
//   opacus   Opacus + PEFT on torch CPU (.venv-bench), same model, LoRA rank/targets, batch,
//            sequence length, steps and ε;
//   torch    the same PEFT LoRA fine-tune without privacy (the accuracy a DP run aims at).
// Settings: bench/src/finetune/settings.ts (FULL, or QUICK with --quick). --no-torch and --no-ours
// leave a side out; --threads=N gives each torch run N intra-op threads (default: the workers, so
// torch has the cores TensorGuard's workers have); --lr=, --clip=, --batch=, --epochs=,
// --max-tokens=, --train-examples=, --test-examples=, --workers=, --rank=, --alpha=, --optimizer=,
// --epsilon=, --nonprivate-lr= override a setting for every side (settings.ts withOverrides).
// The full setting first fine-tunes on public data (IMDB) without privacy, and every side starts
// from that adapter (publicAdapter below; --public=none: from scratch, as --quick does).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { presetSplitFile, resolveDatasetPreset, resolveModelPreset } from '@tensorguard/worker';
import { runOurs } from '../finetune/ours.js';
import {
  FULL,
  QUICK,
  steps,
  trainRecords,
  withOverrides,
  type FinetuneSettings,
  type PublicInit,
} from '../finetune/settings.js';
import { runTorch, type TorchResult } from '../finetune/torch-side.js';
import type { Benchmark, Row } from '../types.js';

const round = (x: number, d = 3) => Number(x.toFixed(d));

/**
 * The public pretraining's adapter (settings.publicInit): a non-private torch PEFT fine-tune on the
 * public preset's training prefix, evaluated on the private test split (its accuracy before any
 * private step). Kept in bench/results/finetune-public/<key>/, keyed by everything that shapes it,
 * and reused by later runs.
 */
async function publicAdapter(
  s: FinetuneSettings,
  p: PublicInit,
  o: { root: string; modelDir: string; testFile: string; threads: number; log: (l: string) => void },
): Promise<{ dir: string; accuracy: number; examplesPerS: number } | { error: string }> {
  const key = createHash('sha256')
    .update(
      JSON.stringify([
        p,
        s.modelPreset,
        s.maxTokens,
        s.loraRank,
        s.loraAlpha,
        s.loraTargets,
        s.testExamples ?? null,
      ]),
    )
    .digest('hex')
    .slice(0, 16);
  const dir = path.join(o.root, 'bench', 'results', 'finetune-public', key);
  const resultFile = path.join(dir, 'result.json');
  if (fs.existsSync(resultFile)) {
    o.log(`public pretraining: reusing ${dir}`);
    return {
      dir,
      ...(JSON.parse(fs.readFileSync(resultFile, 'utf8')) as { accuracy: number; examplesPerS: number }),
    };
  }
  const data = await resolveDatasetPreset(p.preset, { onDownload: (w) => o.log(`downloading ${w.pkg}`) });
  const settings: FinetuneSettings = {
    ...s,
    batch: p.batch,
    epochs: p.epochs,
    nonprivateLearningRate: p.learningRate,
    trainExamples: p.trainExamples,
    schedule: 'constant',
    warmupSteps: 0,
    emaDecay: undefined,
  };
  fs.mkdirSync(dir, { recursive: true });
  const r = await runTorch(
    o.root,
    'nonprivate',
    settings,
    { modelDir: o.modelDir, trainFile: presetSplitFile(data, p.preset, 'train'), testFile: o.testFile },
    o.threads,
    o.log,
    { save: dir },
  );
  if ('error' in r) return r;
  const out = { accuracy: r.accuracy, examplesPerS: r.examples_per_s };
  fs.writeFileSync(resultFile, JSON.stringify(out) + '\n');
  return { dir, ...out };
}

export const benchmark: Benchmark = {
  description:
    'DP-LoRA fine-tune, all-MiniLM-L6-v2 on Rotten Tomatoes, ε = 8 at δ = 1e-5: TensorGuard (4 workers, secure aggregation) vs Opacus + PEFT vs non-private PEFT',
  async run(opts) {
    const { quick, root, args, log } = opts;
    const s = withOverrides(quick ? QUICK : FULL, args);
    const threadsArg = args.find((a) => a.startsWith('--threads='));
    const threads = threadsArg ? Number(threadsArg.slice(10)) : Math.min(s.workers, os.cpus().length);
    log(
      `settings${quick ? ' (--quick)' : ''}: ${trainRecords(s)} training records, ${s.testExamples ?? 'all'} test records, expected batch ${s.batch}, ${steps(s)} steps, ${s.maxTokens} tokens, LoRA r=${s.loraRank} α=${s.loraAlpha} on ${s.loraTargets.join('+')}, ${s.optimizer} lr ${s.learningRate} (non-private ${s.nonprivateLearningRate}), ${s.schedule} schedule${s.warmupSteps > 0 ? ` after ${s.warmupSteps} warm-up steps` : ''}${s.emaDecay !== undefined ? `, EMA ${s.emaDecay}` : ''}, clip ${s.clipNorm}, ${s.workers} workers${s.publicInit ? `, public pretraining on ${s.publicInit.trainExamples} ${s.publicInit.preset} records` : ', no public pretraining'}`,
    );
    const modelDir = await resolveModelPreset(s.modelPreset, {
      onDownload: (w) => log(`downloading ${w.pkg}`),
    });
    const data = await resolveDatasetPreset(s.datasetPreset, {
      onDownload: (w) => log(`downloading ${w.pkg}`),
    });
    const splitFiles = {
      trainFile: presetSplitFile(data, s.datasetPreset, 'train'),
      testFile: presetSplitFile(data, s.datasetPreset, 'test'),
    };
    const rows: Row[] = [];
    const summary: Record<string, number> = {};

    let initAdapter: string | undefined;
    if (s.publicInit) {
      const pub = await publicAdapter(s, s.publicInit, {
        root,
        modelDir,
        testFile: splitFiles.testFile,
        threads,
        log,
      });
      if ('error' in pub)
        throw new Error(`public pretraining failed (--public=none runs without it): ${pub.error}`);
      initAdapter = pub.dir;
      rows.push({
        side: `public pretraining: PEFT non-private on ${s.publicInit.trainExamples} ${s.publicInit.preset} reviews (every side starts here)`,
        accuracy: round(pub.accuracy),
        examples_per_s: round(pub.examplesPerS, 1),
        note: pub.dir,
      });
      summary.public_init_accuracy = round(pub.accuracy);
    }

    const ours = args.includes('--no-ours')
      ? { error: 'skipped (--no-ours)' }
      : await runOurs(s, opts, initAdapter);
    if ('error' in ours) {
      log(`ours not run: ${ours.error}`);
      rows.push({ side: 'ours (TensorGuard)', note: ours.error });
    } else {
      rows.push({
        side: `ours (TensorGuard, ${s.workers} workers, secure aggregation)`,
        accuracy: round(ours.dpAccuracy),
        epsilon: round(ours.epsilon),
        examples_per_s: round(ours.examplesPerS, 1),
      });
      rows.push(...(ours.rows ?? []));
      summary.dp_accuracy = round(ours.dpAccuracy);
      summary.epsilon = round(ours.epsilon);
      if (ours.peakRssMbPerWorker !== undefined)
        summary.peak_rss_mb_per_worker = round(ours.peakRssMbPerWorker, 0);
      if (ours.peftRoundtripMaxAbsDiff !== undefined)
        summary.peft_roundtrip_max_abs_diff = ours.peftRoundtripMaxAbsDiff;
    }

    const torch: Partial<Record<'dp' | 'nonprivate', TorchResult>> = {};
    for (const mode of ['dp', 'nonprivate'] as const) {
      const r = args.includes('--no-torch')
        ? { error: 'skipped (--no-torch)' }
        : await runTorch(root, mode, s, { modelDir, ...splitFiles }, threads, log, { init: initAdapter });
      const side = mode === 'dp' ? 'Opacus + PEFT (DP)' : 'PEFT (non-private)';
      if ('error' in r) {
        log(`${side} not run: ${r.error}`);
        rows.push({ side, note: r.error });
        continue;
      }
      torch[mode] = r;
      if (r.train_records !== trainRecords(s))
        throw new Error(
          `torch read ${r.train_records} training records, the settings say ${trainRecords(s)}`,
        );
      rows.push({
        side: `${side}, torch ${r.versions.torch}, ${threads} threads`,
        accuracy: round(r.accuracy),
        epsilon: r.epsilon === null ? null : round(r.epsilon),
        sigma: r.sigma === null ? null : round(r.sigma, 4),
        examples_per_s: round(r.examples_per_s, 1),
        steps: r.steps,
      });
    }
    if (torch.dp) {
      summary.opacus_dp_accuracy = round(torch.dp.accuracy);
      summary.opacus_examples_per_s = round(torch.dp.examples_per_s, 1);
      if (!('error' in ours))
        summary.ours_over_opacus_throughput_finetune = round(ours.examplesPerS / torch.dp.examples_per_s, 2);
    }
    if (torch.nonprivate) {
      summary.nonprivate_accuracy = round(torch.nonprivate.accuracy);
      summary.nonprivate_examples_per_s = round(torch.nonprivate.examples_per_s, 1);
    }
    return { rows, summary };
  },
};
