import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ConfigError, parseRunConfig, type RunConfig } from '../config.js';
import type { ModelDef } from '../models/model.js';
import { Coordinator, type CoordinatorOptions } from './coordinator.js';

/** Metadata only: these tests never open a round, so the model never runs. */
const DEF: ModelDef = {
  kind: 'test-linear',
  inputShape: [2],
  inputDtype: 'float32',
  numClasses: 2,
  params: [{ name: 'w', shape: [4], init: 'zeros', trainable: true }],
  layers: [],
  forward: () => {
    throw new Error('not run here');
  },
};

function config(dir: string, mode: 'masking' | 'he' = 'masking'): RunConfig {
  return parseRunConfig({
    name: 'lifecycle',
    model: { kind: 'mlp' },
    dataset: { format: 'idx', preset: 'fashion-mnist' },
    workers: { count: 3 },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
    secureAggregation: { mode, threshold: 2 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    rounds: 2,
    evaluation: { everyRounds: 1 },
    checkpoint: { dir, everyRounds: 1 },
    envelope: { maxTrainableParameters: 1000, maxUpdateBytes: 1_000_000 },
    roundTimeoutMs: 1000,
  });
}

describe('coordinator: lifecycle', () => {
  let dir: string;
  let coordinators: Coordinator[];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coord-'));
    coordinators = [];
  });
  afterEach(async () => {
    for (const c of coordinators) await c.close(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function make(over: Partial<CoordinatorOptions> = {}): Coordinator {
    const c = new Coordinator({
      config: config(dir),
      def: DEF,
      initial: { w: new Float32Array(4) },
      fingerprint: 'c'.repeat(64),
      evaluate: () => 0.5,
      log: pino({ level: 'silent' }),
      emit: () => {},
      // No worker ever joins here: the barrier would wait this long if nothing ended it.
      startupTimeoutMs: 3_600_000,
      ...over,
    });
    coordinators.push(c);
    return c;
  }

  it('throws on an illegal transition, naming the current state', async () => {
    const c = make();
    expect(c.state).to.equal('CREATED');
    let err: unknown;
    await c.run().catch((e: unknown) => (err = e));
    expect((err as Error).message).to.equal('coordinator: illegal transition CREATED → RUNNING');
    err = undefined;
    await c.listen('127.0.0.1:0').catch((e: unknown) => (err = e));
    expect((err as Error).message).to.equal('coordinator: illegal transition CREATED → SERVING');
    c.resume();
    expect(c.state).to.equal('RESUMED');
    expect(() => c.resume()).to.throw('coordinator: illegal transition RESUMED → RESUMED');
    expect(c.state).to.equal('RESUMED');
  });

  it("refuses mode 'he' without a key holder", () => {
    expect(() => make({ config: config(dir, 'he') })).to.throw(
      ConfigError,
      "'he' needs a key holder; pass CoordinatorOptions.keyHolder",
    );
  });

  it('close() during the run aborts the barrier: the run ends failed, its report written, and the state is CLOSED', async () => {
    const c = make();
    c.resume();
    const port = await c.listen('127.0.0.1:0');
    expect(port).to.be.greaterThan(0);
    expect(c.state).to.equal('SERVING');
    const running = c.run();
    expect(c.state).to.equal('RUNNING');
    await c.close(0);
    const res = await running;
    expect(c.state).to.equal('CLOSED');
    expect(res.status).to.equal('failed');
    expect(res.error).to.equal('the coordinator was closed during the run');
    expect(res.rounds).to.equal(0);
    const report = JSON.parse(fs.readFileSync(res.privacyReport, 'utf8')) as { stopReason: string };
    expect(report.stopReason).to.equal('failed: the coordinator was closed during the run');
    expect(() => c.resume()).to.throw('coordinator: illegal transition CLOSED → RESUMED');
    // Closing again is a no-op.
    await c.close(0);
  });
});
