// HOOK for the TensorGuard side of `npm run bench -- finetune`: the DP-LoRA job (model.kind
// 'hf-bert', model.preset, dataset.preset, `workers` workers with secure aggregation, σ calibrated
// for settings.epsilon at settings.delta over steps(settings) rounds) run with the settings in
// settings.ts. Until it is plugged in, the benchmark reports the torch sides alone and leaves the
// keys that need "ours" out of its summary.
import type { BenchOptions, Row } from '../types.js';
import type { FinetuneSettings } from './settings.js';

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

/** Runs the TensorGuard side, or says why it did not run. */
export async function runOurs(
  _settings: FinetuneSettings,
  _opts: BenchOptions,
): Promise<OursResult | { error: string }> {
  await Promise.resolve();
  return { error: 'the TensorGuard side is not plugged in yet (bench/src/finetune/ours.ts)' };
}
