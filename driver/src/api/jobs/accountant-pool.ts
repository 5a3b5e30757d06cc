// A small pool of worker threads for accountant work (σ calibration, planned ε): a PLD
// computation (the continuous reference named beside a 'pld' job's refused budget) takes seconds
// of CPU, which on the server's event loop stalled every other tenant's calls. Tasks wait in a bounded FIFO queue for a free thread; each has a
// deadline (the call's signal and the pool's own bound), and a thread still busy at its task's
// deadline is terminated and replaced, so abandoned work never holds a thread. PLD tasks (seconds
// each) may hold all threads but one, so that the quick RDP work every submission needs never
// waits behind a tenant's PLD calibrations.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { PlanParameters } from './accounting.js';
import type { AccountantTask, TaskReply } from './accountant-worker.js';
import { ApiError } from '../edge/errors.js';
import type { SpecResult } from './spec.js';

export interface AccountantPoolOptions {
  /** Worker threads (default 2). */
  threads?: number;
  /** Longest a task may run once its thread is ready, in ms (default 60 000). */
  taskTimeoutMs?: number;
  /** Most tasks waiting for a thread; more are refused with RESOURCE_EXHAUSTED (default 64). */
  maxQueued?: number;
}

interface Pending {
  id: number;
  task: AccountantTask;
  /** PLD work: seconds of CPU. */
  slow: boolean;
  signal: AbortSignal | undefined;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  onAbort: () => void;
}

interface Slot {
  worker: Worker;
  /** The thread has loaded its modules; a task's deadline counts from then, not from spawn. */
  ready: boolean;
  busy: Pending | null;
  timer: NodeJS.Timeout | null;
}

const FROM_SOURCE = import.meta.url.endsWith('.ts');

/**
 * From dist, the compiled worker module. From source (tests under tsx), Node 20 does not carry
 * the parent's `--import tsx` loader into worker threads, so the thread registers tsx first.
 */
function newWorker(): Worker {
  if (!FROM_SOURCE) return new Worker(new URL('./accountant-worker.js', import.meta.url));
  // require.resolve finds the CommonJS build; its ESM twin sits beside it.
  const cjs = createRequire(import.meta.url).resolve('tsx/esm/api');
  const tsx = pathToFileURL(cjs.replace(/\.cjs$/, '.mjs')).href;
  const worker = new URL('./accountant-worker.ts', import.meta.url).href;
  return new Worker(
    `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); });`,
    { eval: true },
  );
}

export class AccountantPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private readonly threads: number;
  private readonly taskTimeoutMs: number;
  private readonly maxQueued: number;

  constructor(o: AccountantPoolOptions = {}) {
    this.threads = o.threads ?? 2;
    this.taskTimeoutMs = o.taskTimeoutMs ?? 60_000;
    this.maxQueued = o.maxQueued ?? 64;
    if (!Number.isInteger(this.threads) || this.threads < 1) {
      throw new RangeError(`AccountantPool: threads must be an integer ≥ 1, got ${this.threads}`);
    }
  }

  /** σ from a target ε and q from a batch size (driverSpecResolver), in a pool thread. */
  readonly resolveSpec = (spec: Record<string, unknown>, signal?: AbortSignal): Promise<SpecResult> =>
    this.run({ kind: 'resolveSpec', arg: spec }, signal) as Promise<SpecResult>;

  /** ε after the planned rounds (accounting.plannedEpsilon), in a pool thread. */
  readonly plannedEpsilon = (p: PlanParameters, signal?: AbortSignal): Promise<number> =>
    this.run({ kind: 'plannedEpsilon', arg: p }, signal) as Promise<number>;

  /** Tasks started or waiting. */
  get load(): { running: number; queued: number } {
    return { running: this.slots.filter((s) => s.busy).length, queued: this.queue.length };
  }

  private run(task: AccountantTask, signal: AbortSignal | undefined): Promise<unknown> {
    if (this.closed) return Promise.reject(new ApiError('UNAVAILABLE', 'the server is shutting down'));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.queue.length >= this.maxQueued) {
      return Promise.reject(
        new ApiError(
          'RESOURCE_EXHAUSTED',
          `${this.maxQueued} privacy-accounting tasks are already waiting; retry in a few seconds`,
          { retryDelayMs: 2000 },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const p: Pending = {
        id: this.nextId++,
        task,
        slow: isSlow(task),
        signal,
        resolve,
        reject,
        onAbort: () => {},
      };
      p.onAbort = () => this.abort(p, abortError(signal!));
      signal?.addEventListener('abort', p.onAbort, { once: true });
      this.queue.push(p);
      this.pump();
    });
  }

  private spawn(): Slot {
    const worker = newWorker();
    worker.unref();
    const slot: Slot = { worker, ready: false, busy: null, timer: null };
    worker.on('message', (m: TaskReply | { ready: true }) => {
      if ('ready' in m) {
        slot.ready = true;
        if (slot.busy) this.startTimer(slot, slot.busy);
        return;
      }
      const p = slot.busy;
      if (!p || p.id !== m.id) return;
      this.release(slot);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(`accountant task ${p.task.kind} failed: ${m.message}`));
    });
    const onGone = (err: unknown) => {
      const p = slot.busy;
      this.drop(slot);
      if (p) {
        p.signal?.removeEventListener('abort', p.onAbort);
        p.reject(new Error(`accountant thread stopped during ${p.task.kind}`, { cause: err }));
      }
      this.pump();
    };
    worker.on('error', onGone);
    worker.on('exit', (code) => {
      if (this.slots.includes(slot)) onGone(new Error(`exit code ${code}`));
    });
    this.slots.push(slot);
    return slot;
  }

  /** The first queued task that may start now: slow ones only while a thread stays for quick ones. */
  private nextEligible(): number {
    const slowRunning = this.slots.filter((s) => s.busy?.slow).length;
    const slowAllowed = this.threads === 1 || slowRunning < this.threads - 1;
    return this.queue.findIndex((p) => !p.slow || slowAllowed);
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      const next = this.nextEligible();
      if (next < 0) return;
      let slot = this.slots.find((s) => s.busy === null);
      if (!slot) {
        if (this.slots.length >= this.threads) return;
        try {
          slot = this.spawn();
        } catch (err) {
          const [p] = this.queue.splice(next, 1);
          p!.signal?.removeEventListener('abort', p!.onAbort);
          p!.reject(new Error('cannot start an accountant thread', { cause: err }));
          continue;
        }
      }
      const p = this.queue.splice(next, 1)[0]!;
      slot.busy = p;
      if (slot.ready) this.startTimer(slot, p);
      slot.worker.postMessage({ id: p.id, task: p.task });
    }
  }

  private startTimer(slot: Slot, p: Pending): void {
    slot.timer = setTimeout(
      () =>
        this.abort(
          p,
          new ApiError(
            'DEADLINE_EXCEEDED',
            `privacy accounting (${p.task.kind}) took longer than ${this.taskTimeoutMs} ms; ` +
              'use fewer rounds or the rdp accountant',
          ),
        ),
      this.taskTimeoutMs,
    );
  }

  private release(slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.busy?.signal?.removeEventListener('abort', slot.busy.onAbort);
    slot.busy = null;
    slot.timer = null;
    this.pump();
  }

  private drop(slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
  }

  /** Rejects p; a queued task leaves the queue, a running one takes its thread down with it. */
  private abort(p: Pending, err: unknown): void {
    p.signal?.removeEventListener('abort', p.onAbort);
    const q = this.queue.indexOf(p);
    if (q >= 0) this.queue.splice(q, 1);
    const slot = this.slots.find((s) => s.busy === p);
    if (slot) {
      slot.busy = null;
      this.drop(slot);
      void slot.worker.terminate();
    }
    p.reject(err);
    this.pump();
  }

  /** Rejects what waits, stops every thread. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) {
      p.signal?.removeEventListener('abort', p.onAbort);
      p.reject(new ApiError('UNAVAILABLE', 'the server is shutting down'));
    }
    const slots = this.slots.splice(0);
    for (const s of slots) {
      if (s.timer) clearTimeout(s.timer);
      if (s.busy) s.busy.reject(new ApiError('UNAVAILABLE', 'the server is shutting down'));
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

function isSlow(t: AccountantTask): boolean {
  // σ calibration and the budget check use the rigorous RDP bound under both accountants
  // (milliseconds); only the continuous PLD reference takes seconds.
  return t.kind === 'plannedEpsilon' && t.arg.continuousReference === true;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason instanceof ApiError
    ? signal.reason
    : new ApiError('CANCELLED', 'the call was cancelled or its deadline passed');
}
