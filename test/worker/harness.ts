// Spawns the real coordinator and worker programs (from source via tsx) over loopback gRPC.
import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NODE_ARGS = ['--conditions=tensorguard-source', '--import', 'tsx'];

export interface Proc {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: string[];
  exited: Promise<number | null>;
  /** Resolves with the first stdout JSON line matching `pred`. */
  waitFor(
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * `script`: a program of worker-ts/src/bin, or a path from the repository root. `wrap`: a command
 * line the program runs under (e.g. `unshare ...`), its argv appended.
 */
function start(script: string, args: string[], env: Record<string, string> = {}, wrap: string[] = []): Proc {
  const file = script.includes('/') ? path.join(ROOT, script) : path.join(ROOT, 'worker-ts/src/bin', script);
  const argv = [process.execPath, ...NODE_ARGS, file, ...args];
  const child = spawn(
    wrap.length > 0 ? wrap[0]! : argv[0]!,
    wrap.length > 0 ? [...wrap.slice(1), ...argv] : argv.slice(1),
    {
      cwd: ROOT,
      env: { ...process.env, TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const listeners: (() => void)[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        stderr.push(`(stdout, not JSON) ${line}`);
      }
      listeners.forEach((l) => l());
    }
  });
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    stderr,
    exited,
    waitFor(pred, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find(pred);
          if (hit) {
            clearTimeout(timer);
            resolve(hit);
            return true;
          }
          return false;
        };
        const timer = setTimeout(
          () =>
            reject(new Error(`timed out waiting for a line; stderr tail: ${stderr.join('').slice(-2000)}`)),
          timeoutMs,
        );
        if (check()) return;
        listeners.push(check);
        void exited.then(() =>
          setTimeout(
            () =>
              check() ||
              reject(new Error(`process exited (${script}); stderr tail: ${stderr.join('').slice(-2000)}`)),
            50,
          ),
        );
      });
    },
  };
}

export function startCoordinator(
  configFile: string,
  env: Record<string, string> = {},
  extraArgs: string[] = [],
  wrap: string[] = [],
): Proc {
  return start('coordinator.ts', ['--config', configFile, ...extraArgs], env, wrap);
}

export function startWorker(
  configFile: string,
  index: number,
  address: string,
  env: Record<string, string> = {},
  extraArgs: string[] = [],
): Proc {
  return start(
    'worker.ts',
    ['--config', configFile, '--worker-index', String(index), '--aggregator', address, ...extraArgs],
    env,
  );
}

/**
 * The coordinator program with a crash injected by this harness (test/worker/crash-after-release.ts
 * passes CoordinatorHooks.afterApply): SIGKILLed right after its `releases`-th round was released
 * and applied, before that round's checkpoint.
 */
export function startCrashingCoordinator(
  configFile: string,
  releases: number,
  env: Record<string, string> = {},
): Proc {
  return start(
    'test/worker/crash-after-release.ts',
    ['--crash-after-release', String(releases), '--config', configFile],
    env,
  );
}

/** Identity directories of one job, as ray-cluster's pki.py writes them for the Ray actors. */
export interface JobIdentityDirs {
  aggregator: string;
  keyHolder: string;
  workers: string[];
}

/**
 * Identity directories (ca.pem, cert.pem, key.pem) for the aggregator, the HE key holder and
 * workers 0..n-1 of one job, made by the code the Ray entrypoint runs (pki.py).
 */
export function jobIdentities(job: string, workers: number): JobIdentityDirs {
  const script = [
    'import json, sys',
    'from tensorguard_ray._internal.pki import JobPki',
    'pki = JobPki(sys.argv[1])',
    'n = int(sys.argv[2])',
    'print(json.dumps({"aggregator": pki.aggregator().write(), "keyHolder": pki.key_holder().write(),',
    '                  "workers": [pki.worker(i).write() for i in range(n)]}))',
  ].join('\n');
  const out = execFileSync(path.join(ROOT, '.venv/bin/python'), ['-c', script, job, String(workers)], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as JobIdentityDirs;
}

/**
 * The HE key holder (secure-agg's bin/key-holder) with its identity `tlsDir` (mutual TLS only),
 * listening on loopback, with the job's quorum (secureAggregation.quorum of `configFile`) as its
 * floor. Its ready line is `{"event":"listening","address",...}`.
 */
export function startKeyHolder(configFile: string, tlsDir: string, env: Record<string, string> = {}): Proc {
  // `threshold` is the quorum's old name (hand-written configs of older tests).
  const cfg = JSON.parse(fs.readFileSync(configFile, 'utf8')) as {
    secureAggregation: { quorum?: number; threshold?: number };
  };
  return start(
    'secure-agg/src/bin/key-holder.ts',
    [
      '--min-inputs',
      String(cfg.secureAggregation.quorum ?? cfg.secureAggregation.threshold),
      '--listen',
      '127.0.0.1:0',
      '--tls-dir',
      tlsDir,
    ],
    env,
  );
}

export async function address(coord: Proc): Promise<string> {
  const l = await coord.waitFor((x) => x.type === 'listening', 60_000);
  return l.address as string;
}

/**
 * Privacy settings under which a job equals one process of clipped SGD on the union of the shards:
 * no noise, every record in every round (sampling rate 1), clip norm 0.5, no budget.
 */
export const NOISELESS_FULL_BATCH = {
  clipNorm: 0.5,
  noiseMultiplier: 0,
  delta: 1e-5,
  epsilonBudget: null,
  accountant: 'rdp',
  samplingRate: 1,
};

export function writeConfig(dir: string, overrides: Record<string, unknown>): string {
  const cfg = {
    name: 'test',
    model: { kind: 'mlp', hidden: [16] },
    dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 300, testExamples: 500 },
    workers: { count: 3 },
    privacy: {
      clipNorm: 1,
      noiseMultiplier: 1,
      delta: 1e-5,
      epsilonBudget: null,
      accountant: 'rdp',
      samplingRate: 0.2,
    },
    secureAggregation: { mode: 'masking', threshold: 2 },
    optimizer: { kind: 'sgd', learningRate: 0.5, momentum: 0.5 },
    rounds: 5,
    evaluation: { everyRounds: 5 },
    checkpoint: { dir: path.join(dir, 'ckpt'), everyRounds: 1 },
    envelope: { maxTrainableParameters: 1_000_000, maxUpdateBytes: 100_000_000 },
    roundTimeoutMs: 20_000,
    ...overrides,
  };
  const file = path.join(dir, `job-${Math.random().toString(36).slice(2, 8)}.json`);
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

export function snapshot(d: string): Record<string, string> {
  return Object.fromEntries(
    fs
      .readdirSync(d, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => {
        const p = path.join(e.parentPath, e.name);
        return [path.relative(d, p), fs.readFileSync(p).toString('base64')];
      }),
  );
}

export function killAll(procs: Proc[]): void {
  for (const p of procs) if (p.child.exitCode === null && p.child.pid !== undefined) p.child.kill('SIGKILL');
}

/**
 * Runs a job to its end: the coordinator and `workers` workers of `config`; expects every worker
 * to exit 0 and the coordinator to exit as its done line says. With `ids` every process runs with
 * its job identity (--tls-dir; the coordinator also gets --key-holder-tls-dir unless
 * `ownKeyHolder` is false).
 */
export async function runJob(
  config: string,
  workers: number,
  env: Record<string, string> = {},
  ids?: JobIdentityDirs & { ownKeyHolder?: boolean },
): Promise<{ coord: Proc; done: Record<string, unknown>; ws: Proc[] }> {
  const coord = startCoordinator(
    config,
    env,
    ids
      ? [
          '--tls-dir',
          ids.aggregator,
          ...(ids.ownKeyHolder === false ? [] : ['--key-holder-tls-dir', ids.keyHolder]),
        ]
      : [],
  );
  const ws: Proc[] = [];
  try {
    const addr = await address(coord);
    for (let i = 0; i < workers; i++)
      ws.push(startWorker(config, i, addr, {}, ids ? ['--tls-dir', ids.workers[i]!] : []));
    const done = await coord.waitFor((l) => l.type === 'done', 240_000);
    const codes = await Promise.all(ws.map((w) => w.exited));
    expect(codes).to.deep.equal(ws.map(() => 0));
    expect(await coord.exited).to.equal(done.status === 'succeeded' ? 0 : 1);
    return { coord, done, ws };
  } finally {
    killAll([coord, ...ws]);
  }
}
