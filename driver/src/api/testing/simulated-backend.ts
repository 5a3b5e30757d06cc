// SimulatedBackend: jobs are timers inside the server process that produce the coordinator's
// metric lines (same contract, same parser, same store and streams as a real job). For load
// benchmarks of the API itself, where one process per job would measure process start-up on
// a small machine instead of the server. Jobs do not survive a server restart.
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  BackendHandle,
  BackendStatus,
  JobBackend,
  LogLine,
  SubmitOptions,
} from '../backends/backend.js';

interface SimJob {
  lines: string[];
  state: BackendStatus['state'];
  timer: NodeJS.Timeout | null;
  wake: Set<() => void>;
}

export class SimulatedBackend implements JobBackend {
  readonly name = 'simulated';
  private jobs = new Map<string, SimJob>();

  /** @param roundMs milliseconds per simulated round. */
  constructor(private readonly roundMs = 100) {}

  async submit({ jobId, spec }: SubmitOptions): Promise<BackendHandle> {
    const rounds = typeof spec.rounds === 'number' ? spec.rounds : 1;
    const privacy = (spec.privacy ?? {}) as { delta?: number };
    const job: SimJob = { lines: [], state: 'RUNNING', timer: null, wake: new Set() };
    this.jobs.set(jobId, job);
    let round = 0;
    const push = (o: Record<string, unknown>) => {
      job.lines.push(JSON.stringify(o));
      for (const w of job.wake) w();
      job.wake.clear();
    };
    job.timer = setInterval(() => {
      round += 1;
      // A stand-in ε that grows like √rounds; this backend measures the API, not accounting.
      push({
        type: 'metrics',
        round,
        rounds_total: rounds,
        epsilon: 0.1 * Math.sqrt(round),
        delta: privacy.delta ?? 1e-5,
        eval_accuracy: null,
      });
      if (round >= rounds) {
        clearInterval(job.timer!);
        push({ type: 'done', status: 'succeeded', rounds: round, stop_reason: `completed ${round} rounds` });
        job.state = 'SUCCEEDED';
      }
    }, this.roundMs);
    return { backendJobId: `sim-${jobId}`, data: { jobId } };
  }

  private job(h: BackendHandle): SimJob | undefined {
    return this.jobs.get(String(h.data.jobId));
  }

  async status(h: BackendHandle): Promise<BackendStatus> {
    const j = this.job(h);
    return j
      ? { state: j.state, message: '' }
      : {
          state: 'FAILED',
          message: 'unknown to this server process (simulated jobs do not survive restarts)',
        };
  }

  async *follow(h: BackendHandle, fromIndex: number, signal: AbortSignal): AsyncIterable<LogLine> {
    const j = this.job(h);
    if (!j) return;
    let i = fromIndex;
    while (!signal.aborted) {
      while (i < j.lines.length) {
        yield { index: i, text: j.lines[i]! };
        i += 1;
      }
      if (j.state !== 'RUNNING') return;
      // One abort listener per wait, removed on wake-up: a long job must not pile them up.
      await new Promise<void>((resolve) => {
        const done = () => {
          j.wake.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        j.wake.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  async cancel(h: BackendHandle): Promise<void> {
    const j = this.job(h);
    if (j && j.state === 'RUNNING') {
      clearInterval(j.timer!);
      j.state = 'STOPPED';
      for (const w of j.wake) w();
    }
  }

  async close(): Promise<void> {
    for (const j of this.jobs.values()) if (j.timer) clearInterval(j.timer);
    await sleep(0);
  }
}
