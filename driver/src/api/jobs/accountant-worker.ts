// The body of an accountant-pool thread (accountant-pool.ts): privacy accounting and σ
// calibration, which take seconds with the PLD accountant, run here so that the server's event
// loop keeps answering other calls. Messages: {id, kind, arg} in, {id, ok, value | message} out.
import { parentPort } from 'node:worker_threads';
import { plannedEpsilon, type PlanParameters } from './accounting.js';
import { driverSpecResolver } from './spec.js';

export type AccountantTask =
  { kind: 'resolveSpec'; arg: Record<string, unknown> } | { kind: 'plannedEpsilon'; arg: PlanParameters };

export interface TaskMessage {
  id: number;
  task: AccountantTask;
}

export type TaskReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string };

async function runTask(t: AccountantTask): Promise<unknown> {
  switch (t.kind) {
    case 'resolveSpec':
      return driverSpecResolver(t.arg);
    case 'plannedEpsilon':
      return plannedEpsilon(t.arg);
  }
}

const port = parentPort;
if (port) {
  port.on('message', (m: TaskMessage) => {
    runTask(m.task).then(
      (value) => port.postMessage({ id: m.id, ok: true, value } satisfies TaskReply),
      (err: unknown) =>
        port.postMessage({
          id: m.id,
          ok: false,
          message: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        } satisfies TaskReply),
    );
  });
  // Loaded: the pool counts a task's deadline from here.
  port.postMessage({ ready: true });
}
