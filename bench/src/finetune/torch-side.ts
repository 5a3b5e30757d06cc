// The torch sides of the fine-tune benchmark: bench/scripts/finetune_torch.py in .venv-bench
// (Opacus DP-SGD + PEFT LoRA, and the same LoRA fine-tune without privacy), on the same model
// folder and split files the TensorGuard side resolves (worker-ts hf/presets.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { FinetuneSettings } from './settings.js';

export interface TorchResult {
  mode: 'dp' | 'nonprivate';
  examples_per_s: number;
  train_seconds: number;
  steps: number;
  examples: number;
  accuracy: number;
  train_records: number;
  test_records: number;
  epsilon: number | null;
  sigma: number | null;
  versions: Record<string, string>;
}

export const VENV_BENCH_HINT =
  'python3 -m venv .venv-bench && .venv-bench/bin/pip install torch opacus flwr==1.42.0 dp-accounting==0.6.0 peft transformers';

/** Runs one torch side; resolves to its result or to { error } (never throws for a failed run). */
export function runTorch(
  root: string,
  mode: 'dp' | 'nonprivate',
  s: FinetuneSettings,
  paths: { modelDir: string; trainFile: string; testFile: string },
  threads: number,
  log: (l: string) => void,
  adapters: { init?: string; save?: string } = {},
): Promise<TorchResult | { error: string }> {
  const python = path.join(root, '.venv-bench', 'bin', 'python');
  if (!fs.existsSync(python)) return Promise.resolve({ error: `no .venv-bench (${VENV_BENCH_HINT})` });
  const args = [
    path.join(root, 'bench', 'scripts', 'finetune_torch.py'),
    ...['--model', paths.modelDir, '--mode', mode],
    ...['--train-file', paths.trainFile, '--test-file', paths.testFile],
    ...['--max-tokens', String(s.maxTokens), '--batch', String(s.batch), '--epochs', String(s.epochs)],
    ...[
      '--optimizer',
      s.optimizer,
      '--lr',
      String(mode === 'dp' ? s.learningRate : s.nonprivateLearningRate),
    ],
    ...['--schedule', s.schedule, '--warmup-steps', String(s.warmupSteps)],
    ...['--ema-decay', String(s.emaDecay ?? 0)],
    ...['--rank', String(s.loraRank), '--alpha', String(s.loraAlpha), '--targets', s.loraTargets.join(',')],
    ...['--clip', String(s.clipNorm), '--epsilon', String(s.epsilon), '--delta', String(s.delta)],
    ...['--train-examples', String(s.trainExamples ?? 0), '--test-examples', String(s.testExamples ?? 0)],
    ...['--threads', String(threads)],
    ...(adapters.init ? ['--init-adapter', adapters.init] : []),
    ...(adapters.save ? ['--save-adapter', adapters.save] : []),
  ];
  log(
    `torch ${mode}: .venv-bench/bin/python bench/scripts/finetune_torch.py --mode ${mode} --threads ${threads}`,
  );
  return new Promise((resolve) => {
    const child = spawn(python, args, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: String(threads), TOKENIZERS_PARALLELISM: 'false' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('error', (e) => resolve({ error: `cannot run ${python}: ${e.message}` }));
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0)
        return resolve({ error: `finetune_torch.py --mode ${mode} exited ${code}: ${err.slice(-600)}` });
      try {
        resolve(JSON.parse(line) as TorchResult);
      } catch {
        resolve({ error: `finetune_torch.py printed no result: ${out.slice(-300)}` });
      }
    });
  });
}
