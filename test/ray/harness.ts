// Helpers of the Ray integration tests: the CLI run from source, specs, and the contract's
// fixture Node programs (ray-cluster/tests/fixtures) standing in for worker-ts's coordinator and
// worker until the lead switches these tests to the real programs.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixtures = path.join(root, 'ray-cluster', 'tests', 'fixtures');

/** Environment that makes jobs run the fixture programs (forwarded by `train` to the job). */
export function fixtureEnv(roundMs = 200): NodeJS.ProcessEnv {
  return {
    TENSORGUARD_COORDINATOR_JS: path.join(fixtures, 'fake-coordinator.mjs'),
    TENSORGUARD_WORKER_JS: path.join(fixtures, 'fake-worker.mjs'),
    TENSORGUARD_FIXTURE_ROUND_MS: String(roundMs),
    TENSORGUARD_RAY_PYTHON: path.join(root, '.venv', 'bin', 'python'),
  };
}

export function writeSpec(dir: string, name: string, rounds: number): string {
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(
    file,
    [
      `name: ${name}`,
      'model: { kind: cnn-tanh }',
      'dataset: { format: idx, preset: fashion-mnist }',
      'workers: { count: 3, cpusPerWorker: 0.5, maxRestarts: 2 }',
      'coordinator: { cpus: 0.5 }',
      'privacy: { clipNorm: 1, noiseMultiplier: 1.1, epsilonBudget: 8, samplingRate: 0.01 }',
      'optimizer: { kind: sgd, learningRate: 0.1 }',
      `rounds: ${rounds}`,
      'checkpoint: { dir: ckpt }',
      'roundTimeoutMs: 60000',
    ].join('\n'),
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
  f: () => T | undefined | Promise<T | undefined>,
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

export function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
