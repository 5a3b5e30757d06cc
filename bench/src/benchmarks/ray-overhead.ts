// What Ray costs: the same small job (tanh CNN, 3 workers, secure aggregation, no evaluation)
// run (a) as the Node programs started directly, one coordinator and 3 workers over loopback
// gRPC, and (b) through `tensorguard train` on a private local Ray head (head start, Jobs API
// submission, placement group, supervisor actors, log relay). Measured from outside, by the time
// each round's line reaches the observer: spec → first round, and the per-round wall time
// between the first and the last round (the Ray path's lines travel actor → entrypoint → job
// logs → driver; their arrival rate is the round rate). The coordinator's own round_seconds is
// shown beside it: the same in both paths unless Ray's processes compete for the CPUs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Benchmark, Row } from '../types.js';
import { until, watch } from '../watch.js';

const WORKERS = 3;

/** The job, as a spec whose every value is already resolved, so the direct config is identical. */
function jobSpec(rounds: number, ckpt: string): Record<string, unknown> {
  return {
    name: 'ray-overhead',
    model: { kind: 'cnn-tanh' },
    dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 1500, testExamples: 200 },
    workers: { count: WORKERS, cpusPerWorker: 1 },
    coordinator: { cpus: 1 },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 32 / 500 },
    secureAggregation: { mode: 'masking', threshold: WORKERS },
    optimizer: { kind: 'sgd', learningRate: 0.5, momentum: 0.9 },
    rounds,
    evaluation: { everyRounds: 100_000 },
    checkpoint: { dir: ckpt, everyRounds: 100_000 },
    roundTimeoutMs: 600_000,
  };
}

/** What `resolveRunConfig` makes of jobSpec (driver/src/spec/resolve.ts): the defaults filled in. */
function runConfig(spec: Record<string, unknown>): Record<string, unknown> {
  const s = spec as { privacy: Record<string, unknown>; secureAggregation: Record<string, unknown> };
  return {
    ...spec,
    jobId: 'ray-overhead-direct',
    model: { kind: 'cnn-tanh', initSeed: 0 },
    dataset: { ...(spec.dataset as object), sharding: 'contiguous' },
    workers: {
      ...(spec.workers as object),
      gpusPerWorker: 0,
      lanes: 1,
      placementStrategy: 'PACK',
      maxRestarts: 3,
    },
    privacy: { ...s.privacy, accountant: 'rdp' },
    secureAggregation: { ...s.secureAggregation, bits: 'auto' },
    optimizer: { kind: 'sgd', learningRate: 0.5, momentum: 0.9 },
    envelope: { maxTrainableParameters: 5_000_000, maxUpdateBytes: 64 * 2 ** 20 },
  };
}

interface PathResult {
  /** ms from start to the first round's line, per round line arrival times. */
  roundTimes: number[];
  reportedRoundSeconds: number[];
  marks: Record<string, number>;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function direct(root: string, rounds: number, dir: string): Promise<PathResult> {
  const file = path.join(dir, 'direct.json');
  fs.writeFileSync(file, JSON.stringify(runConfig(jobSpec(rounds, path.join(dir, 'ckpt-direct')))));
  const env = { TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1', TF_CPP_MIN_LOG_LEVEL: '2' };
  const bin = (b: string) => path.join(root, 'worker-ts', 'dist', 'bin', b);
  const t0 = performance.now();
  const coord = watch(process.execPath, [bin('coordinator.js'), '--config', file], env, t0, root);
  const procs = [coord];
  try {
    const parsed = () =>
      coord.lines
        .filter((l) => l.stream === 'out' && l.text.startsWith('{'))
        .map((l) => ({ t: l.t, o: JSON.parse(l.text) as Record<string, unknown> }));
    const address = await until(
      'the coordinator to listen',
      () => parsed().find((x) => x.o.type === 'listening')?.o.address as string | undefined,
      120_000,
      procs,
    );
    for (let i = 0; i < WORKERS; i++) {
      procs.push(
        watch(
          process.execPath,
          [bin('worker.js'), '--config', file, '--worker-index', String(i), '--aggregator', address],
          { ...env, TENSORGUARD_WORKER_INDEX: String(i) },
          t0,
          root,
        ),
      );
    }
    const done = await until(
      'the job to finish',
      () => parsed().find((x) => x.o.type === 'done')?.o,
      600_000,
      [coord],
    );
    if (done.status !== 'succeeded') throw new Error(`direct job failed: ${String(done.error)}`);
    const m = parsed().filter((x) => x.o.type === 'metrics');
    return {
      roundTimes: m.map((x) => x.t),
      reportedRoundSeconds: m.map((x) => Number(x.o.round_seconds)),
      marks: {},
    };
  } finally {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
}

async function viaRay(root: string, rounds: number, dir: string): Promise<PathResult> {
  const file = path.join(dir, 'ray.json');
  fs.writeFileSync(file, JSON.stringify(jobSpec(rounds, path.join(dir, 'ckpt-ray'))));
  const t0 = performance.now();
  const cli = watch(
    process.execPath,
    [path.join(root, 'driver', 'dist', 'bin', 'tensorguard.js'), 'train', file, '--json', '--num-cpus', '4'],
    // A private head, as `tensorguard train` starts without an address.
    { TENSORGUARD_STATE_DIR: path.join(dir, 'state'), RAY_ADDRESS: '' },
    t0,
    root,
  );
  const code = await cli.exited;
  const err = cli.lines.filter((l) => l.stream === 'err');
  const result = cli.lines.filter((l) => l.stream === 'out').at(-1)?.text ?? '';
  if (code !== 0)
    throw new Error(`tensorguard train exited ${code}: ${result}\n${err.map((l) => l.text).join('\n')}`);
  const at = (re: RegExp) => err.find((l) => re.test(l.text))?.t ?? NaN;
  const progress = err.filter((l) => /^round \d+\//.test(l.text));
  return {
    roundTimes: progress.map((l) => l.t),
    reportedRoundSeconds: progress.map((l) => Number(/· ([\d.]+) s\/round/.exec(l.text)?.[1])),
    marks: { head_ready_s: at(/^Ray dashboard: /) / 1000, submitted_s: at(/^submitted job /) / 1000 },
  };
}

function row(name: string, r: PathResult, rounds: number): Row {
  const [first] = r.roundTimes;
  const last = r.roundTimes.at(-1)!;
  if (r.roundTimes.length !== rounds)
    throw new Error(`${name}: ${r.roundTimes.length} of ${rounds} rounds seen`);
  return {
    path: name,
    head_ready_s: r.marks.head_ready_s === undefined ? null : Number(r.marks.head_ready_s.toFixed(2)),
    submitted_s: r.marks.submitted_s === undefined ? null : Number(r.marks.submitted_s.toFixed(2)),
    first_round_s: Number((first! / 1000).toFixed(2)),
    round_wall_s: Number(((last - first!) / 1000 / (rounds - 1)).toFixed(4)),
    round_reported_s: Number(mean(r.reportedRoundSeconds.slice(1)).toFixed(4)),
    rounds,
  };
}

export const benchmark: Benchmark = {
  description:
    'Ray path vs the same Node programs started directly (tanh CNN, 3 workers, secure aggregation): spec → first round, per-round wall time',
  async run({ quick, root, log }) {
    const rounds = quick ? 20 : 60;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-bench-ray-'));
    try {
      log(`direct: coordinator + ${WORKERS} workers, ${rounds} rounds`);
      const d = row('direct', await direct(root, rounds, dir), rounds);
      log(`ray: tensorguard train on a private local head, ${rounds} rounds`);
      const r = row('ray (private head)', await viaRay(root, rounds, dir), rounds);
      const ratio = Number(r.round_wall_s) / Number(d.round_wall_s);
      return {
        rows: [d, r],
        summary: {
          start_seconds: Number(r.first_round_s),
          round_overhead_ratio: Number(ratio.toFixed(3)),
        },
      };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
