import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseRunConfig, type RunConfig } from '../config.js';
import { roundEncoding, roundPrivacy } from '../announcement.js';
import { LEDGER_FILE, PRIVACY_REPORT_FILE, ReleaseGate, type ReleaseRequest } from './release-gate.js';
import type { LedgerEntry } from './ledger.js';
import { DeltaAboveInverseNError } from './privacy.js';

const D = 8;

function config(dir: string, over: { epsilonBudget?: number | null; sharding?: string } = {}): RunConfig {
  return parseRunConfig({
    name: 'gate',
    model: { kind: 'mlp' },
    dataset: { format: 'idx', preset: 'fashion-mnist', sharding: over.sharding ?? 'hash' },
    workers: { count: 3 },
    privacy: {
      clipNorm: 1,
      noiseMultiplier: 1,
      delta: 1e-5,
      epsilonBudget: over.epsilonBudget ?? null,
      samplingRate: 0.1,
    },
    secureAggregation: { mode: 'masking', threshold: 2 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    rounds: 5,
    evaluation: { everyRounds: 1 },
    checkpoint: { dir, everyRounds: 1 },
    envelope: { maxTrainableParameters: 1000, maxUpdateBytes: 1_000_000 },
    roundTimeoutMs: 1000,
  });
}

/** A round released by `survivors`, with the noise share and scale the announcement derives. */
function request(cfg: RunConfig, round: number, survivors: number[]): ReleaseRequest {
  const { shareStd } = roundPrivacy(cfg, D, 3);
  const { scale } = roundEncoding(cfg, D, 3, 100);
  return { round, survivors, shareStd, scale };
}

const quiet = () => pino({ level: 'silent' });

describe('coordinator/release-gate', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gate-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('admits a round: appends it to the ledger (after the header) and counts it, charged to its survivors', () => {
    const cfg = config(dir);
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    expect(gate.replay(0, [])).to.equal(0);
    expect(gate.admit(request(cfg, 1, [0, 2]))).to.equal(true);
    const lines = fs.readFileSync(path.join(dir, LEDGER_FILE), 'utf8').trim().split('\n');
    expect(lines).to.have.length(2);
    expect(JSON.parse(lines[0]!).type).to.equal('header');
    const e = JSON.parse(lines[1]!) as LedgerEntry;
    expect(e.round).to.equal(1);
    expect(e.shards).to.deep.equal([0, 2]);
    expect(e.survivors).to.equal(2);
    expect(e.integerEvent).to.not.equal(undefined);
    expect(gate.releasedRounds).to.equal(1);
    expect(gate.epsilon).to.be.greaterThan(0).and.lessThan(Infinity);
    expect(gate.refusal).to.equal(undefined);
  });

  it("charges every shard under 'contiguous' sharding, whoever survived", () => {
    const cfg = config(dir, { sharding: 'contiguous' });
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    gate.replay(0, []);
    gate.admit(request(cfg, 1, [1, 2]));
    expect(gate.entries[0]!.shards).to.deep.equal([0, 1, 2]);
  });

  it('refuses a release that would pass the budget, writing nothing to the ledger or the accountant', () => {
    // ε after one round, measured on a gate without a budget: the budget sits just above it.
    const free = config(fs.mkdtempSync(path.join(dir, 'free-')));
    const probe = new ReleaseGate({ config: free, dimension: D, log: quiet() });
    probe.replay(0, []);
    probe.admit(request(free, 1, [0, 1, 2]));
    const oneRound = probe.epsilon;

    const cfg = config(dir, { epsilonBudget: oneRound * 1.01 });
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    gate.replay(0, []);
    expect(gate.admit(request(cfg, 1, [0, 1, 2]))).to.equal(true);
    const file = path.join(dir, LEDGER_FILE);
    const before = fs.readFileSync(file);
    expect(gate.admit(request(cfg, 2, [0, 1, 2]))).to.equal(false);
    expect(fs.readFileSync(file).equals(before)).to.equal(true);
    expect(gate.releasedRounds).to.equal(1);
    expect(gate.entries.map((e) => e.round)).to.deep.equal([1]);
    expect(gate.epsilon).to.equal(oneRound);
    expect(gate.refusal).to.match(
      /^privacy budget: releasing round 2 would reach ε = \d+\.\d{3} > epsilonBudget /,
    );
  });

  it('refuses the very first release over a tiny budget without creating the ledger', () => {
    const cfg = config(dir, { epsilonBudget: 1e-3 });
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    gate.replay(0, []);
    expect(gate.checkNextRound()).to.match(
      /^privacy budget: another round would reach ε = \d+\.\d{3} > epsilonBudget 0\.001$/,
    );
    expect(gate.admit(request(cfg, 1, [0, 1]))).to.equal(false);
    expect(fs.existsSync(path.join(dir, LEDGER_FILE))).to.equal(false);
    expect(gate.releasedRounds).to.equal(0);
  });

  it('lets the next round open when even its worst case fits the budget', () => {
    const gate = new ReleaseGate({ config: config(dir, { epsilonBudget: 1e6 }), dimension: D, log: quiet() });
    gate.replay(0, []);
    expect(gate.checkNextRound()).to.equal(undefined);
  });

  it('checks δ ≤ 1/N once, when the records are known, unless privacy.allowDeltaAboveInverseN', () => {
    const cfg = config(dir);
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    expect(() => gate.checkDelta(1000)).to.not.throw();
    // Checked once: a later call (a worker that rejoined with another size) changes nothing.
    expect(() => gate.checkDelta(1_000_000)).to.not.throw();
    const strict = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    expect(() => strict.checkDelta(1_000_000)).to.throw(
      DeltaAboveInverseNError,
      /^privacy\.delta 0\.00001 is above 1\/N = 0\.00000100 for N = 1000000 training records/,
    );
    const allowed = { ...cfg, privacy: { ...cfg.privacy, allowDeltaAboveInverseN: true } } as RunConfig;
    const lax = new ReleaseGate({ config: allowed, dimension: D, log: quiet() });
    expect(() => lax.checkDelta(1_000_000)).to.not.throw();
  });

  it('replays the ledger merged with the checkpoint events, counting each round once', () => {
    const cfg = config(dir);
    const first = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    first.replay(0, []);
    first.admit(request(cfg, 1, [0, 1]));
    first.admit(request(cfg, 2, [1, 2]));
    const fromCheckpoint: LedgerEntry[] = [first.entries[1]!, { ...first.entries[1]!, round: 3 }];
    const again = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    expect(again.replay(2, fromCheckpoint)).to.equal(3);
    expect(again.releasedRounds).to.equal(3);
    expect(again.entries.map((e) => e.round)).to.deep.equal([1, 2]);
    expect(() => again.replay(2, [])).to.throw('release gate: replay() runs once, before any release');
  });

  it('writes the privacy report with every released round and the stop reason', () => {
    const cfg = config(dir);
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    gate.replay(0, []);
    gate.admit(request(cfg, 1, [0, 1, 2]));
    const file = gate.writeReport('completed 1 rounds');
    expect(file).to.equal(path.join(dir, PRIVACY_REPORT_FILE));
    const report = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(report.stopReason).to.equal('completed 1 rounds');
    expect((report.releasedRounds as unknown[]).length).to.equal(1);
    expect(report.epsilon).to.equal(gate.epsilon);
    expect(report.nonPrivate).to.equal(false);
    expect(report).to.not.have.property('epsilonContinuousReference');
  });

  it("adds the continuous Gaussian's ε under pld, labelled as a reference, beside the rigorous one", () => {
    const base = config(dir);
    const cfg = { ...base, privacy: { ...base.privacy, accountant: 'pld' as const } };
    const gate = new ReleaseGate({ config: cfg, dimension: D, log: quiet() });
    gate.replay(0, []);
    gate.admit(request(cfg, 1, [0, 1, 2]));
    const report = JSON.parse(fs.readFileSync(gate.writeReport('done'), 'utf8')) as Record<string, unknown>;
    expect(report.epsilonContinuousReference).to.be.a('number').and.greaterThan(0);
    expect(report.epsilon).to.equal(gate.epsilon);
  });
});
