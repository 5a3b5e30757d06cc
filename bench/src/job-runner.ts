// Runs a TensorGuard job with the built programs (worker-ts/dist/bin): one coordinator and N
// workers over loopback gRPC, collecting their JSON metric lines. Used by the fmnist and round
// benchmarks; build first (`node_modules/.bin/tsc -b`). HE jobs run over mutual TLS with identities
// from ray-cluster's pki.py (the key holder needs its own certificate; `.venv` from the setup),
// masking jobs without TLS, as before.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type Line = Record<string, unknown>;

export interface JobRun {
  coordinator: Line[];
  workers: Line[][];
  done: Line;
  wallSeconds: number;
}

function run(
  root: string,
  bin: string,
  args: string[],
  env: Record<string, string>,
): { child: ChildProcess; lines: Line[]; stderr: string[] } {
  const child = spawn(process.execPath, [path.join(root, 'worker-ts/dist/bin', bin), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  const stderr: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(l) as Line);
      } catch {
        // not a metric line
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr.push(d.toString());
    if (stderr.length > 200) stderr.shift();
  });
  return { child, lines, stderr };
}

/** Identity directories of one job (pki.py): the aggregator's, the key holder's, each worker's. */
function jobIdentities(
  root: string,
  workers: number,
): { aggregator: string; keyHolder: string; workers: string[] } {
  const script = [
    'import json, sys',
    'from tensorguard_ray._internal.pki import JobPki',
    'pki = JobPki("bench")',
    'n = int(sys.argv[1])',
    'print(json.dumps({"aggregator": pki.aggregator().write(), "keyHolder": pki.key_holder().write(),',
    '                  "workers": [pki.worker(i).write() for i in range(n)]}))',
  ].join('\n');
  const out = execFileSync(path.join(root, '.venv/bin/python'), ['-c', script, String(workers)], {
    cwd: path.join(root, 'ray-cluster'),
    encoding: 'utf8',
  });
  return JSON.parse(out) as { aggregator: string; keyHolder: string; workers: string[] };
}

/** Runs `config` (a RunConfig object) with `workers` workers; throws if the job fails. */
export async function runJob(
  root: string,
  config: Record<string, unknown>,
  workers: number,
  log: (l: string) => void,
  threadsPerProcess = 1,
  /** Called with each program's PID once it is started (the finetune benchmark samples their peak RSS). */
  onSpawned?: (role: 'coordinator' | 'worker', pid: number) => void,
): Promise<JobRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-bench-'));
  const file = path.join(dir, 'job.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ ...config, checkpoint: { dir: path.join(dir, 'ckpt'), everyRounds: 1000 } }),
  );
  const env = { TF_NUM_INTRAOP_THREADS: String(threadsPerProcess), TF_NUM_INTEROP_THREADS: '1' };
  const sa = config.secureAggregation as { mode?: string } | undefined;
  const ids = sa?.mode === 'he' ? jobIdentities(root, workers) : undefined;
  const t0 = performance.now();
  const coord = run(
    root,
    'coordinator.js',
    ['--config', file, ...(ids ? ['--tls-dir', ids.aggregator, '--key-holder-tls-dir', ids.keyHolder] : [])],
    env,
  );
  const procs = [coord];
  if (coord.child.pid !== undefined) onSpawned?.('coordinator', coord.child.pid);
  try {
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const l = coord.lines.find((x) => x.type === 'listening');
        if (l) {
          clearInterval(timer);
          resolve(l.address as string);
        } else if (coord.child.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`coordinator exited: ${coord.stderr.join('').slice(-1500)}`));
        }
      }, 100);
    });
    const ws = Array.from({ length: workers }, (_, i) =>
      run(
        root,
        'worker.js',
        [
          '--config',
          file,
          '--worker-index',
          String(i),
          '--aggregator',
          address,
          ...(ids ? ['--tls-dir', ids.workers[i]!] : []),
        ],
        env,
      ),
    );
    procs.push(...ws);
    for (const w of ws) if (w.child.pid !== undefined) onSpawned?.('worker', w.child.pid);
    let lastRound = 0;
    const done = await new Promise<Line>((resolve, reject) => {
      const timer = setInterval(() => {
        const m = coord.lines.filter((x) => x.type === 'metrics');
        if (m.length > lastRound) {
          lastRound = m.length;
          const l = m[m.length - 1]!;
          if (lastRound % 10 === 0 || l.eval_accuracy !== null) {
            log(
              `round ${l.round}/${l.rounds_total} ε=${Number(l.epsilon).toFixed(3)} acc=${String(l.eval_accuracy)}`,
            );
          }
        }
        const d = coord.lines.find((x) => x.type === 'done');
        if (d) {
          clearInterval(timer);
          resolve(d);
        } else if (coord.child.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`coordinator exited: ${coord.stderr.join('').slice(-1500)}`));
        }
      }, 200);
    });
    if (done.status !== 'succeeded') throw new Error(`job failed: ${String(done.error)}`);
    await Promise.all(
      ws.map((w) => new Promise((r) => (w.child.exitCode !== null ? r(null) : w.child.on('exit', r)))),
    );
    return {
      coordinator: coord.lines,
      workers: ws.map((w) => w.lines),
      done,
      wallSeconds: (performance.now() - t0) / 1000,
    };
  } finally {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    if (ids)
      for (const d of [ids.aggregator, ids.keyHolder, ...ids.workers])
        fs.rmSync(d, { recursive: true, force: true });
  }
}

export function fmnistConfig(over: Record<string, unknown>): Record<string, unknown> {
  return {
    name: 'bench',
    model: { kind: 'cnn-tanh' },
    dataset: { format: 'idx', preset: 'fashion-mnist' },
    workers: { count: 4 },
    privacy: {
      clipNorm: 1,
      noiseMultiplier: 1,
      delta: 1e-5,
      epsilonBudget: 3,
      accountant: 'rdp',
      samplingRate: 0.01,
    },
    secureAggregation: { mode: 'masking', threshold: 3 },
    optimizer: { kind: 'sgd', learningRate: 2, momentum: 0.9 },
    rounds: 10,
    evaluation: { everyRounds: 1000 },
    envelope: { maxTrainableParameters: 1_000_000, maxUpdateBytes: 100_000_000 },
    roundTimeoutMs: 600_000,
    ...over,
  };
}
