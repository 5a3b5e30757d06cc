// LocalProcessBackend: each job is a detached local Node process (local-job.ts) whose stdout goes
// to <workDir>/<jobId>/log. Detached on purpose: like a Ray job, it outlives the API server, so
// a restarted server finds it by its handle (pid + directory) and continues reading its log.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { epsilonSchedule } from '../jobs/accounting.js';
import { stringifyKeepingNonFinite } from '../edge/json-numbers.js';
import {
  BackendError,
  LogLines,
  pause,
  type BackendHandle,
  type BackendStatus,
  type JobBackend,
  type LogLine,
  type SubmitOptions,
} from '../backends/backend.js';
import type { LocalJobFile } from './local-job.js';

export interface LocalProcessBackendOptions {
  /** Where job directories go. */
  workDir: string;
  /** Milliseconds between rounds (default 200). */
  roundMs?: number;
  /** Log polling interval in milliseconds (default 50). */
  pollMs?: number;
}

interface Spec {
  rounds?: unknown;
  privacy?: { samplingRate?: unknown; noiseMultiplier?: unknown; delta?: unknown };
  evaluation?: { everyRounds?: unknown };
}

const numOr = (v: unknown, d: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : d);

function pidAlive(pid: number, jobId: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // Guard against pid reuse: the process must be ours (Linux; elsewhere trust kill(0)).
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(jobId);
  } catch {
    return true;
  }
}

export class LocalProcessBackend implements JobBackend {
  readonly name = 'local-process';
  private readonly roundMs: number;
  private readonly pollMs: number;

  constructor(private readonly o: LocalProcessBackendOptions) {
    this.roundMs = o.roundMs ?? 200;
    this.pollMs = o.pollMs ?? 50;
    fs.mkdirSync(o.workDir, { recursive: true });
  }

  private dir(jobId: string): string {
    return path.join(this.o.workDir, jobId);
  }

  async submit({ jobId, spec, signal }: SubmitOptions): Promise<BackendHandle> {
    signal.throwIfAborted();
    const s = spec as Spec;
    const rounds = Math.max(1, Math.floor(numOr(s.rounds, 1)));
    const delta = numOr(s.privacy?.delta, 1e-5);
    const epsilons = await epsilonSchedule({
      samplingRate: numOr(s.privacy?.samplingRate, 0.01),
      noiseMultiplier: numOr(s.privacy?.noiseMultiplier, 1),
      delta,
      rounds,
    });
    const dir = this.dir(jobId);
    fs.mkdirSync(dir, { recursive: true });
    const job: LocalJobFile = {
      jobId,
      rounds,
      epsilons,
      delta,
      evalEveryRounds: Math.max(1, Math.floor(numOr(s.evaluation?.everyRounds, 1))),
      roundMs: this.roundMs,
      failAfterRound: null,
    };
    // ε = ∞ (no noise) travels as "Infinity", not as JSON's null.
    fs.writeFileSync(path.join(dir, 'job.json'), stringifyKeepingNonFinite(job));
    const here = fileURLToPath(import.meta.url);
    const fromSource = here.endsWith('.ts');
    const script = path.join(path.dirname(here), fromSource ? 'local-job.ts' : 'local-job.js');
    const args = fromSource
      ? ['--conditions=tensorguard-source', '--import', 'tsx', script, dir]
      : [script, dir];
    const log = fs.openSync(path.join(dir, 'log'), 'a');
    try {
      const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
      const pid = await new Promise<number>((resolve, reject) => {
        child.once('spawn', () => resolve(child.pid!));
        child.once('error', (err) =>
          reject(new BackendError(`cannot start the local job: ${err.message}`, false)),
        );
      });
      child.unref();
      return { backendJobId: `local-${pid}`, data: { pid, dir } };
    } finally {
      fs.closeSync(log);
    }
  }

  private handleOf(h: BackendHandle): { pid: number; dir: string; jobId: string } {
    const pid = Number(h.data.pid);
    const dir = String(h.data.dir);
    return { pid, dir, jobId: path.basename(dir) };
  }

  async status(h: BackendHandle): Promise<BackendStatus> {
    const { pid, dir, jobId } = this.handleOf(h);
    try {
      const exit = JSON.parse(fs.readFileSync(path.join(dir, 'exit.json'), 'utf8')) as {
        status: string;
        code: number;
      };
      const state =
        exit.status === 'succeeded' ? 'SUCCEEDED' : exit.status === 'stopped' ? 'STOPPED' : 'FAILED';
      return { state, message: `exit code ${exit.code}` };
    } catch {
      // no exit.json yet
    }
    if (pidAlive(pid, jobId)) return { state: 'RUNNING', message: '' };
    // The process might have written exit.json between the two checks.
    if (fs.existsSync(path.join(dir, 'exit.json'))) return this.status(h);
    return { state: 'FAILED', message: `process ${pid} exited without a final status (killed?)` };
  }

  async *follow(h: BackendHandle, fromIndex: number, signal: AbortSignal): AsyncIterable<LogLine> {
    const { dir } = this.handleOf(h);
    const file = path.join(dir, 'log');
    const lines = new LogLines(fromIndex);
    let offset = 0;
    for (;;) {
      if (signal.aborted) return;
      const terminal = (await this.status(h)).state !== 'RUNNING';
      let chunk = '';
      try {
        const fd = fs.openSync(file, 'r');
        try {
          const size = fs.fstatSync(fd).size;
          if (size > offset) {
            const buf = Buffer.alloc(size - offset);
            fs.readSync(fd, buf, 0, buf.length, offset);
            offset = size;
            chunk = buf.toString('utf8');
          }
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        throw new BackendError(`cannot read ${file}: ${(err as Error).message}`, true, { cause: err });
      }
      yield* lines.push(chunk);
      if (terminal && chunk === '') {
        yield* lines.end();
        return;
      }
      if (!(await pause(this.pollMs, signal))) return;
    }
  }

  async cancel(h: BackendHandle): Promise<void> {
    const { pid, jobId } = this.handleOf(h);
    if (pidAlive(pid, jobId)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // exited in between
      }
    }
  }

  async close(): Promise<void> {
    // Jobs are detached and outlive the server on purpose; nothing else is held.
  }
}
