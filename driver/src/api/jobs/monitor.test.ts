// How evaluation reaches GetJob/WatchJob: JobMonitor over a backend whose log holds synthetic
// contract lines (the coordinator's `metrics` lines, the Ray entrypoint's `progress` lines), with
// and without `eval_loss`, into the store's eval_metrics events.
import { expect } from 'chai';
import pino from 'pino';
import type { JobBackend, LogLine } from '../backends/backend.js';
import type { JobEvent } from './domain.js';
import { EventHub, JobMonitor } from './monitor.js';
import { parseRayJobLine } from '../backends/ray-backend.js';
import { JobStore } from './store.js';

function backendWith(lines: string[], parseLine?: JobBackend['parseLine']): JobBackend {
  return {
    name: 'stub',
    submit: () => Promise.reject(new Error('not used')),
    status: () => Promise.resolve({ state: 'SUCCEEDED', message: '' }),
    async *follow(_h, from: number): AsyncIterable<LogLine> {
      for (let i = from; i < lines.length; i++) yield { index: i, text: lines[i]! };
    },
    cancel: () => Promise.resolve(),
    close: () => Promise.resolve(),
    ...(parseLine ? { parseLine } : {}),
  };
}

async function followToEnd(
  backend: JobBackend,
): Promise<{ events: JobEvent[]; store: JobStore; id: string }> {
  const store = new JobStore(':memory:');
  const { record } = store.createJob({
    tenant: 't',
    requestId: 'r',
    requestHash: 'h',
    displayName: 'n',
    roundsTotal: 2,
    accountant: 'rdp',
    delta: 1e-5,
    spec: { privacy: { noiseMultiplier: 1 } },
    backend: 'stub',
  });
  store.setBackendHandle(record.jobId, 'b-1', {});
  const monitor = new JobMonitor(store, backend, new EventHub(), pino({ level: 'silent' }));
  monitor.follow(record.jobId);
  for (let i = 0; i < 200 && store.get(record.jobId)!.state !== 'SUCCEEDED'; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  await monitor.close();
  return { events: store.eventsAfter(record.jobId, 0, 100), store, id: record.jobId };
}

const evals = (events: JobEvent[]) =>
  events.filter((e) => e.type === 'eval_metrics').map((e) => (e.type === 'eval_metrics' ? e : null)!);

describe('api/monitor: evaluation metrics into events', () => {
  it("carries the coordinator's eval_loss into EvalMetrics.loss, null where a line has none", async () => {
    const { events, store, id } = await followToEnd(
      backendWith([
        '{"type":"metrics","round":1,"rounds_total":3,"epsilon":0.5,"eval_accuracy":0.61,"eval_loss":1.2345}',
        '{"type":"metrics","round":2,"rounds_total":3,"epsilon":0.7,"eval_accuracy":0.64}',
        '{"type":"metrics","round":3,"rounds_total":3,"epsilon":0.9,"eval_accuracy":null,"eval_loss":null}',
        '{"type":"done","status":"succeeded","rounds":3}',
      ]),
    );
    expect(evals(events).map((e) => [e.round, e.accuracy, e.loss])).to.deep.equal([
      [1, 0.61, 1.2345],
      [2, 0.64, null],
    ]);
    expect(store.get(id)!.evalAccuracy).to.equal(0.64);
  });

  it("carries eval_loss from the Ray entrypoint's progress lines, and ignores actors' raw lines", async () => {
    const { events } = await followToEnd(
      backendWith(
        [
          '(AggregatorActor pid=7) {"type":"metrics","round":1,"rounds_total":2,"eval_accuracy":0.1,"eval_loss":9}',
          '{"type":"progress","round":1,"rounds_total":2,"epsilon":0.5,"eval_accuracy":0.7,"eval_loss":0.81}',
          '{"type":"progress","round":2,"rounds_total":2,"epsilon":0.6,"eval_accuracy":0.75,"eval_loss":0.72}',
          '{"type":"result","status":"succeeded","rounds":2}',
        ],
        parseRayJobLine,
      ),
    );
    expect(evals(events).map((e) => [e.round, e.accuracy, e.loss])).to.deep.equal([
      [1, 0.7, 0.81],
      [2, 0.75, 0.72],
    ]);
  });
});
