// The TensorGuard side of `npm run bench -- finetune`: the DP-LoRA job (model.kind 'hf-bert',
// model.preset, dataset.preset, `workers` workers with secure aggregation among all of them, σ
// calibrated for settings.epsilon at settings.delta over steps(settings) rounds as the driver
// calibrates) run with the settings in settings.ts by the built programs (job-runner.ts). Measured
// from outside the job: examples/s over the training rounds, the peak resident memory of each
// worker process (VmHWM, sampled from /proc while it runs), and the PEFT round trip of the adapter
// the job wrote (worker-ts's peftRoundTrip, with .venv-bench).
import fs from 'node:fs';
import { calibrateNoiseMultiplier } from '@tensorguard/dp';
import { peftRoundTrip, resolveModelPreset } from '@tensorguard/worker';
import { fmnistConfig, runJob } from '../job-runner.js';
import type { BenchOptions, Row } from '../types.js';
import { steps, trainRecords, type FinetuneSettings } from './settings.js';

export interface OursResult {
  /** Test accuracy of the DP job. */
  dpAccuracy: number;
  /** ε the job's accountant reports at settings.delta. */
  epsilon: number;
  /** Training examples processed per second over the job's rounds (all workers together). */
  examplesPerS: number;
  /** Peak resident memory of one worker process, MB (the largest over workers). */
  peakRssMbPerWorker?: number;
  /** max |TS logits − PeftModel.from_pretrained logits| of the exported adapter (needs .venv-bench). */
  peftRoundtripMaxAbsDiff?: number;
  /** Extra table rows (per-phase times, the adapter's folder, ...). */
  rows?: Row[];
}

/** Peak resident set (VmHWM) of a live process in MB, or null when it has exited. */
function peakRssMb(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Where a training round's time goes: the coordinator's round and its phases, and each worker
 * phase (sample, clip, noise, encode, ...) averaged over workers and the training rounds (all but
 * the last, which also evaluates).
 */
function phaseNote(coordRounds: Record<string, unknown>[], workers: Record<string, unknown>[][]): string {
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);
  const last = coordRounds.length; // rounds 1..last are training rounds
  const parts = [`round ${mean(coordRounds.map((l) => Number(l.round_seconds))).toFixed(3)}`];
  const phases = new Map<string, number[]>();
  for (const lines of workers)
    for (const l of lines) {
      if (l.type !== 'metrics' || !(Number(l.round) <= last)) continue;
      for (const [k, v] of Object.entries((l.phase_seconds ?? {}) as Record<string, number>)) {
        if (!phases.has(k)) phases.set(k, []);
        phases.get(k)!.push(Number(v));
      }
    }
  for (const [k, v] of phases) parts.push(`${k} ${mean(v).toFixed(3)}`);
  return parts.join(', ');
}

/** Runs the TensorGuard side, or says why it did not run. */
export async function runOurs(
  s: FinetuneSettings,
  opts: BenchOptions,
  initAdapter?: string,
): Promise<OursResult | { error: string }> {
  const { root, log } = opts;
  const records = trainRecords(s);
  const rounds = steps(s);
  const samplingRate = Math.min(1, s.batch / records);
  // As the driver calibrates (driver/src/spec/resolve.ts): the job's ε is the integer mechanism's
  // rigorous RDP bound, so calibrate on it.
  const sigma = calibrateNoiseMultiplier({
    targetEpsilon: s.epsilon,
    delta: s.delta,
    samplingRate,
    steps: rounds,
    mechanism: 'integer',
  });
  log(
    `ours: ${s.workers} workers, q = ${samplingRate.toFixed(4)}, σ = ${sigma.toFixed(4)} for ε = ${s.epsilon}`,
  );
  const config = fmnistConfig({
    name: 'bench-finetune',
    model: {
      kind: 'hf-bert',
      preset: s.modelPreset,
      lora: { rank: s.loraRank, alpha: s.loraAlpha, targetModules: s.loraTargets },
      ...(initAdapter ? { initAdapter } : {}),
    },
    dataset: {
      format: 'csv',
      preset: s.datasetPreset,
      maxTokens: s.maxTokens,
      numClasses: 2,
      ...(s.trainExamples !== undefined ? { trainExamples: s.trainExamples } : {}),
      ...(s.testExamples !== undefined ? { testExamples: s.testExamples } : {}),
    },
    workers: { count: s.workers },
    privacy: {
      clipNorm: s.clipNorm,
      noiseMultiplier: sigma,
      delta: s.delta,
      epsilonBudget: s.epsilon,
      accountant: 'rdp',
      samplingRate,
    },
    secureAggregation: { mode: 'masking', quorum: s.workers },
    optimizer: {
      ...(s.optimizer === 'adam' ? { kind: 'adam' } : { kind: 'sgd', momentum: 0.9 }),
      learningRate: s.learningRate,
      schedule: { kind: s.schedule, warmupRounds: s.warmupSteps },
      ...(s.emaDecay !== undefined ? { ema: { decay: s.emaDecay } } : {}),
    },
    rounds,
    // Only after the last round unless asked (--eval-every), so that the rounds' times are training.
    evaluation: { everyRounds: s.evalEvery ?? rounds },
  });
  const peaks = new Map<number, number>();
  const workerPids: number[] = [];
  const sampler = setInterval(() => {
    for (const pid of workerPids) {
      const mb = peakRssMb(pid);
      if (mb !== null) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, mb));
    }
  }, 500);
  let run;
  try {
    run = await runJob(root, config, s.workers, log, 1, (role, pid) => {
      if (role === 'worker') workerPids.push(pid);
    });
  } catch (err) {
    return { error: (err as Error).message.slice(0, 500) };
  } finally {
    clearInterval(sampler);
  }
  const metrics = run.coordinator.filter((l) => l.type === 'metrics');
  // The rounds that did not evaluate: examples per second of training.
  const trainRounds = metrics.filter((l) => l.eval_accuracy === null || l.eval_accuracy === undefined);
  const trainSeconds = trainRounds.reduce((a, l) => a + Number(l.round_seconds), 0);
  const examplesPerS =
    trainRounds.length > 0 ? (trainRounds.length * samplingRate * records) / trainSeconds : Number.NaN;
  const done = run.done;
  const result: OursResult = {
    dpAccuracy: Number(done.test_accuracy),
    epsilon: Number(done.epsilon),
    examplesPerS,
    rows: [
      { side: 'ours: PEFT adapter', note: String(done.adapter ?? '(none)') },
      {
        side: 'ours: seconds per round, training rounds (mean; workers: mean over workers)',
        note: phaseNote(trainRounds, run.workers),
      },
    ],
  };
  if (peaks.size > 0) result.peakRssMbPerWorker = Math.max(...peaks.values());
  if (typeof done.adapter === 'string') {
    try {
      const modelDir = await resolveModelPreset(s.modelPreset);
      result.peftRoundtripMaxAbsDiff = peftRoundTrip({
        modelDir,
        adapterDir: done.adapter,
      }).peft_roundtrip_max_abs_diff;
    } catch (err) {
      log(`ours: PEFT round trip not run: ${(err as Error).message.slice(0, 300)}`);
    }
  }
  return result;
}
