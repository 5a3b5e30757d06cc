import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { CheckpointError } from '../checkpoint/errors.js';
import { loadLatestCheckpoint } from '../checkpoint/store.js';
import { parseRunConfig, type RunConfig } from '../config.js';
import type { ModelDef, ParamSpec } from '../models/model.js';
import { METRICS_FILE, type RoundMetrics } from '../report/metrics-log.js';
import { Checkpoints } from './checkpoints.js';
import type { LedgerEntry } from './ledger.js';
import { ModelState } from './model-state.js';

const PARAMS: ParamSpec[] = [
  { name: 'w', shape: [2, 2], init: 'zeros', trainable: true },
  { name: 'frozen', shape: [3], init: 'ones', trainable: false },
  { name: 'b', shape: [2], init: 'zeros', trainable: true },
];
const TRAINABLE = PARAMS.filter((p) => p.trainable);
const INITIAL = {
  w: Float32Array.from([1, 2, 3, 4]),
  frozen: Float32Array.from([7, 8, 9]),
  b: Float32Array.from([5, 6]),
};
/** Metadata only: checkpoints never run the model. */
const DEF: ModelDef = {
  kind: 'test-linear',
  inputShape: [2],
  inputDtype: 'float32',
  numClasses: 2,
  params: PARAMS,
  layers: [],
  forward: () => {
    throw new Error('not run here');
  },
};

function config(dir: string): RunConfig {
  return parseRunConfig({
    name: 'model-state',
    model: { kind: 'mlp' },
    dataset: { format: 'idx', preset: 'fashion-mnist' },
    workers: { count: 3 },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
    secureAggregation: { mode: 'masking', threshold: 2 },
    optimizer: { kind: 'adam', learningRate: 0.1 },
    rounds: 5,
    evaluation: { everyRounds: 1 },
    checkpoint: { dir, everyRounds: 1 },
    envelope: { maxTrainableParameters: 1000, maxUpdateBytes: 1_000_000 },
    roundTimeoutMs: 1000,
  });
}

const event = (round: number): LedgerEntry => ({
  round,
  samplingRate: 0.1,
  noiseMultiplier: 1,
  survivors: 3,
  shards: [0, 1, 2],
  quorum: 2,
  configuredNoiseMultiplier: 1,
  time: 't',
});

describe('coordinator/model-state', () => {
  const opt = { kind: 'sgd' as const, learningRate: 0.5 };

  it('flattens the trainable parameters and publishes version 0', () => {
    const m = new ModelState(TRAINABLE, INITIAL, opt);
    expect([...m.params]).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(m.version).to.equal(0);
    expect(m.published.version.round).to.equal(0);
    expect([...m.named().b!]).to.deep.equal([5, 6]);
  });

  it('applies a round: steps, becomes that version, and publishes a copy under a new fingerprint', () => {
    const m = new ModelState(TRAINABLE, INITIAL, opt);
    const v0 = m.published;
    m.apply(4, Float32Array.from([2, 2, 2, 2, 2, 2]));
    expect([...m.params]).to.deep.equal([0, 1, 2, 3, 4, 5]);
    expect(m.version).to.equal(4);
    expect(m.published.version.round).to.equal(4);
    expect(m.published.version.fingerprint).to.not.equal(v0.version.fingerprint);
    m.params[0] = 99;
    expect(m.published.parameters[0]).to.equal(0);
    expect(m.modelFor(m.published.version)).to.equal(m.published);
    expect(m.modelFor(v0.version)).to.equal(undefined);
    expect(m.modelFor({ round: 4, fingerprint: v0.version.fingerprint })).to.equal(undefined);
  });

  it('refuses a non-finite update, keeping the parameters, the version and the published model', () => {
    const m = new ModelState(TRAINABLE, INITIAL, opt);
    m.apply(1, new Float32Array(6));
    const published = m.published;
    const grad = new Float32Array(6);
    grad[3] = NaN;
    expect(() => m.apply(2, grad)).to.throw(
      /^round 2: the update made the model parameters non-finite \(NaN or Infinity\); the job stops/,
    );
    expect([...m.params]).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(m.version).to.equal(1);
    expect(m.published).to.equal(published);
  });
});

describe('coordinator/model-state: optimizer.ema (iterate averaging)', () => {
  const sgd = { kind: 'sgd' as const, learningRate: 1, momentum: 0 };
  const ones = () => Float32Array.from([1, 1, 1, 1, 1, 1]);

  it('outputs the bias-corrected moving average of the iterates; training continues from the iterate', () => {
    const m = new ModelState(TRAINABLE, INITIAL, { ...sgd, ema: { decay: 0.5 } });
    expect(m.output()).to.equal(m.params); // no update yet: the iterate itself
    m.apply(1, ones()); // params 0..5
    expect([...m.output()]).to.deep.equal([0, 1, 2, 3, 4, 5]); // (0.5·p1) / (1 − 0.5)
    m.apply(2, ones()); // params −1..4
    // ema = 0.5·(0.5·p1) + 0.5·p2 = 0.25·p1 + 0.5·p2; / (1 − 0.25): (p1 + 2·p2) / 3
    expect([...m.output()].map((v) => +v.toFixed(5))).to.deep.equal(
      [0, 1, 2, 3, 4, 5].map((p1) => +((p1 + 2 * (p1 - 1)) / 3).toFixed(5)),
    );
    expect([...m.params]).to.deep.equal([-1, 0, 1, 2, 3, 4]);
    expect([...m.published.parameters]).to.deep.equal([-1, 0, 1, 2, 3, 4]);
    // Without ema the output is the iterate.
    const plain = new ModelState(TRAINABLE, INITIAL, sgd);
    plain.apply(1, ones());
    expect(plain.output()).to.equal(plain.params);
  });

  it('checkpoints the average with the optimizer state; a checkpoint without one starts it at the iterate', () => {
    const opts = { ...sgd, ema: { decay: 0.9 } };
    const a = new ModelState(TRAINABLE, INITIAL, opts);
    a.apply(1, ones());
    a.apply(2, Float32Array.from([3, 0, 0, 0, 0, -2]));
    const st = a.optimizerState();
    expect(Object.keys(st.slots)).to.include('ema');
    const b = new ModelState(TRAINABLE, INITIAL, opts);
    b.restore(a.named(), st, 2);
    expect([...b.output()]).to.deep.equal([...a.output()]);
    a.apply(3, ones());
    b.apply(3, ones());
    expect([...b.output()]).to.deep.equal([...a.output()]);

    const c = new ModelState(TRAINABLE, INITIAL, opts);
    const withoutEma = { step: st.step, slots: { velocity: st.slots.velocity! } };
    c.restore(a.named(), withoutEma, 2);
    [...c.output()].forEach((v, i) => expect(v).to.be.closeTo(a.params[i]!, 1e-5));
    expect(() =>
      c.restore(a.named(), { step: 2, slots: { ...st.slots, ema: new Float32Array(2) } }, 2),
    ).to.throw("optimizer state 'ema' has 2 entries, expected 6");
  });
});

/** Base-model fingerprints are SHA-256 hex digests. */
const BASE_1 = 'a'.repeat(64);
const BASE_2 = 'b'.repeat(64);

describe('coordinator/checkpoints', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpts-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const make = (cfg: RunConfig, fingerprint = BASE_1, log = pino({ level: 'silent' })) =>
    new Checkpoints({ config: cfg, def: DEF, initial: INITIAL, fingerprint, log });

  it('restores nothing from an empty folder', () => {
    const cfg = config(dir);
    const m = new ModelState(TRAINABLE, INITIAL, cfg.optimizer);
    expect(make(cfg).restore(m)).to.equal(null);
    expect(m.version).to.equal(0);
  });

  it('saves the model state and restores it, with the optimizer, the version and the accountant events', () => {
    const cfg = config(dir);
    const a = new ModelState(TRAINABLE, INITIAL, cfg.optimizer);
    a.apply(1, Float32Array.from([1, -1, 1, -1, 1, -1]));
    a.apply(2, Float32Array.from([1, 1, 1, 1, 1, 1]));
    const saved = make(cfg).save(a, { events: [event(1), event(2)], epsilon: 0.25 });
    const manifest = JSON.parse(fs.readFileSync(path.join(saved, 'manifest.json'), 'utf8')) as {
      round: number;
      model: { trainable: string[] };
      epsilon: number;
    };
    expect(manifest.round).to.equal(2);
    expect(manifest.model.trainable).to.deep.equal(['w', 'b']);
    expect(manifest.epsilon).to.equal(0.25);
    // Frozen parameters are saved from the initial values, trainable ones from the model.
    const stored = loadLatestCheckpoint(dir, { baseModelFingerprint: BASE_1 })!;
    expect([...stored.model.frozen!.data]).to.deep.equal([7, 8, 9]);
    expect([...stored.model.b!.data]).to.deep.equal([...a.named().b!]);

    const b = new ModelState(TRAINABLE, INITIAL, cfg.optimizer);
    const ck = make(cfg);
    const restored = ck.restore(b)!;
    expect(restored.round).to.equal(2);
    expect(restored.events.map((e) => e.round)).to.deep.equal([1, 2]);
    expect(ck.last).to.equal(saved);
    expect([...b.params]).to.deep.equal([...a.params]);
    expect(b.version).to.equal(2);
    expect(b.optimizerState().step).to.equal(2);
    // The same next step from the same state: Adam's moments came back too.
    const g = Float32Array.from([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
    a.apply(3, g);
    b.apply(3, g);
    expect([...b.params]).to.deep.equal([...a.params]);
  });

  it('refuses a checkpoint of another base model, naming it', () => {
    const cfg = config(dir);
    make(cfg).save(new ModelState(TRAINABLE, INITIAL, cfg.optimizer), { events: [], epsilon: Infinity });
    expect(() => make(cfg, BASE_2).restore(new ModelState(TRAINABLE, INITIAL, cfg.optimizer))).to.throw(
      CheckpointError,
      /different base model/,
    );
  });

  it('logs a metrics.jsonl that cannot be written and carries on', () => {
    const cfg = config(dir);
    fs.mkdirSync(path.join(dir, METRICS_FILE));
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(s) });
    const m = { round: 1, rounds_total: 1, time: 't' } as unknown as RoundMetrics;
    expect(() => make(cfg, BASE_1, log).appendMetrics(m)).to.not.throw();
    expect(lines.join('')).to.contain('could not append to metrics.jsonl');
  });
});
