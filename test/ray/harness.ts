// Helpers of the Ray end-to-end tests: the CLI run from source, small real job specs, and what a
// test needs to look at a running job from outside (Ray's state API, the metrics port, the Node
// processes by pid, ray.kill through Ray's Python client). The jobs run the real programs
// (worker-ts/dist/bin/coordinator.js and worker.js, built by `npx tsc -b`) on real private heads.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { headEnv, type ClusterInfo } from '@tensorguard/driver';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const python = path.join(root, '.venv', 'bin', 'python');

/**
 * Environment of the CLI (forwarded by `train` to the job): the venv's Python for a given
 * cluster, and short protocol deadlines so that a round whose worker was killed mid-flight ends
 * (as a dropout) in seconds instead of the default 15 s per stage.
 */
export function jobEnv(): NodeJS.ProcessEnv {
  return {
    TENSORGUARD_RAY_PYTHON: python,
    TENSORGUARD_STAGE_TIMEOUT_MS: '5000',
    TENSORGUARD_JOIN_GRACE_MS: '1000',
  };
}

export interface SpecOptions {
  rounds: number;
  /** Training records (split in 3 contiguous shards). Default 600. */
  trainExamples?: number;
  checkpointEvery?: number;
  /** privacy.epsilonBudget; null (no limit, tests only) for jobs that are stopped, not finished. */
  epsilonBudget?: number | null;
  /** secureAggregation.mode; default masking. 'he' starts the aggregator's own key holder. */
  mode?: 'masking' | 'he';
}

/**
 * A small real job: the tanh CNN on the first few hundred Fashion-MNIST records, 3 workers with
 * secure aggregation (threshold 2, so a round survives one dropout), evaluation every round.
 */
export function writeSpec(dir: string, name: string, o: SpecOptions): string {
  const file = path.join(dir, `${name}.yaml`);
  const n = o.trainExamples ?? 600;
  fs.writeFileSync(
    file,
    [
      `name: ${name}`,
      'model: { kind: cnn-tanh }',
      `dataset: { format: idx, preset: fashion-mnist, trainExamples: ${n}, testExamples: 200 }`,
      'workers: { count: 3, cpusPerWorker: 0.5, maxRestarts: 2 }',
      'coordinator: { cpus: 0.5 }',
      `privacy: { clipNorm: 1, noiseMultiplier: 1.1, epsilonBudget: ${o.epsilonBudget === undefined ? 30 : o.epsilonBudget}, samplingRate: 0.1 }`,
      `secureAggregation: { mode: ${o.mode ?? 'masking'}, quorum: 2 }`,
      'optimizer: { kind: sgd, learningRate: 0.5, momentum: 0.9 }',
      `rounds: ${o.rounds}`,
      `checkpoint: { dir: ckpt-${name}, everyRounds: ${o.checkpointEvery ?? 5} }`,
      'roundTimeoutMs: 5000',
    ].join('\n') + '\n',
  );
  return file;
}

export interface CliRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  done: Promise<number | null>;
}

/** Starts `tensorguard <args>` from source (tsx), collecting its output. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  const child = spawn(
    process.execPath,
    [
      '--conditions=tensorguard-source',
      '--import',
      'tsx',
      path.join(root, 'driver', 'src', 'bin', 'tensorguard.ts'),
      ...args,
    ],
    { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const run: CliRun = {
    child,
    stdout: '',
    stderr: '',
    done: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  child.stdout!.on('data', (d: Buffer) => (run.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

export async function until<T>(
  what: string,
  f: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The highest round of `train`'s progress lines so far (0 before the first). */
export function lastRound(stderr: string): number {
  return Math.max(0, ...[...stderr.matchAll(/^round (\d+)\//gm)].map((m) => Number(m[1])));
}

export function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by its parent) still answers signal 0.
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * The job's Node processes on this machine, by role ('aggregator', 'worker-0', …): found by the
 * config file each supervisor actor passes to its child (`$TMPDIR/tensorguard/<job>/<role>.json`).
 */
export function nodeProcesses(jobId: string): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`/tensorguard/${jobId}/(aggregator|worker-\\d+)\\.json`);
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmd: string;
    try {
      cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const m = re.exec(cmd);
    if (m && /worker-ts\/dist\/bin\/(coordinator|worker)\.js/.test(cmd) && pidAlive(Number(d))) {
      out.set(m[1]!, Number(d));
    }
  }
  return out;
}

/** GET on the head's dashboard with its token; the parsed JSON body. */
export async function dashboardGet<T>(head: ClusterInfo, urlPath: string): Promise<T> {
  const res = await fetch(`${head.dashboardUrl}${urlPath}`, {
    headers: { Authorization: `Bearer ${head.token}` },
  });
  if (!res.ok) throw new Error(`GET ${urlPath}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Names of the ALIVE actors, from Ray's state API (`/api/v0/actors`). */
export async function aliveActorNames(head: ClusterInfo): Promise<string[]> {
  const body = await dashboardGet<{ data: { result: { result: { name: string; state: string }[] } } }>(
    head,
    '/api/v0/actors?limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE',
  );
  return body.data.result.result.map((a) => a.name).filter((n) => n !== '');
}

/** Prometheus text from the head's metrics export port ('' when it does not answer). */
export async function metricsText(head: ClusterInfo): Promise<string> {
  try {
    const res = await fetch(`http://127.0.0.1:${head.metricsPort}/metrics`);
    return res.ok ? await res.text() : '';
  } catch {
    return '';
  }
}

/**
 * A Python process connected to the head with Ray's client, that on `kill(name)` calls
 * `ray.kill(actor, no_restart=False)` on a named TensorGuard actor (Ray restarts the actor; its
 * old Node child dies by PDEATHSIG). Started ahead of time: `ray.init` takes seconds, and real
 * rounds take a fraction of one.
 */
export class RayKiller {
  private readonly child: ChildProcess;
  private out = '';
  private constructor(head: ClusterInfo) {
    this.child = spawn(
      python,
      [
        '-u',
        '-c',
        [
          'import sys, ray',
          `ray.init(address=${JSON.stringify(head.gcsAddress)}, namespace="tensorguard", log_to_driver=False)`,
          'print("ready", flush=True)',
          'for line in sys.stdin:',
          '    ray.kill(ray.get_actor(line.strip()), no_restart=False)',
          '    print("killed " + line.strip(), flush=True)',
        ].join('\n'),
      ],
      { env: { ...process.env, ...headEnv(head.token), RAY_ADDRESS: '' }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  static async start(head: ClusterInfo): Promise<RayKiller> {
    const k = new RayKiller(head);
    await until('ray.init in the killer process', () => k.out.includes('ready') || k.exited(), 60_000);
    if (k.exited()) throw new Error(`the ray.kill helper exited: ${k.out}`);
    return k;
  }

  private exited(): boolean {
    return this.child.exitCode !== null;
  }

  async kill(name: string): Promise<void> {
    this.child.stdin!.write(`${name}\n`);
    await until(`ray.kill(${name})`, () => this.out.includes(`killed ${name}`) || this.exited(), 30_000);
    if (this.exited()) throw new Error(`ray.kill(${name}) failed: ${this.out}`);
  }

  close(): void {
    this.child.stdin!.end();
    if (!this.exited()) this.child.kill('SIGTERM');
  }
}

export interface PrivacyReport {
  epsilon: number;
  releasedRounds: { round: number; survivors: number }[];
}

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
